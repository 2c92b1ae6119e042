"""SSML cost on the event loop: parsing a document, and cutting a stream of chunks.

``Engine.prepare`` parses SSML on the event loop (it is the one validation), so the parse
must stay far under a millisecond for a typical reply; the Wyoming stream splitter re-reads
the current sentence on every chunk, so its cost per document is measured with 10-character
chunks (smaller than Home Assistant's deltas). Process CPU time, the mean of many runs.

    uv run python bench/ssml_bench.py
"""

from __future__ import annotations

import time

from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.ssml import parse_ssml
from fastkokoro_wyoming.engine.text.ssml_sentences import SsmlSentenceSplitter
from fastkokoro_wyoming.engine.text.vocab import Vocab

PARAGRAPH = (
    '<p>The <sub alias="Home Assistant">HA</sub> server is on. It is '
    '<say-as interpret-as="time">7:15pm</say-as> and <prosody rate="slow">the '
    '<say-as interpret-as="cardinal">42</say-as> lights</prosody> are off. '
    '<break time="500ms"/> Say <phoneme alphabet="ipa" ph="ˈkoʊkəɹoʊ">Kokoro</phoneme>.</p>'
)


def main() -> None:
    table, vocab = LanguageTable(), Vocab.load()
    print("| document | parse (ms CPU) | stream split, 10-char chunks (ms CPU) | sentences |")
    print("|---|---|---|---|")
    for copies in (1, 10):
        doc = "<speak>" + PARAGRAPH * copies + "</speak>"
        runs = 400 // copies
        t = time.process_time()
        for _ in range(runs):
            parse_ssml(doc, lang="a", languages=table, vocab=vocab)
        parse_ms = (time.process_time() - t) / runs * 1000
        t = time.process_time()
        for _ in range(runs // 4):
            splitter = SsmlSentenceSplitter("a")
            out = [s for i in range(0, len(doc), 10) for s in splitter.add(doc[i : i + 10])]
            out.append(splitter.finish())
        split_ms = (time.process_time() - t) / (runs // 4) * 1000
        print(f"| {len(doc)} chars | {parse_ms:.2f} | {split_ms:.2f} | {len(out)} |")


if __name__ == "__main__":
    main()
