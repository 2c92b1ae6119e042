"""The reply corpus (tests/data/replies.yaml) through two checkouts' text path, interleaved.

How many replies' phonemes a change to the text path changed, and what it costs per
reply: cleanup, sentences, G2P and the vocabulary, as the engine does it. Each checkout
runs in its own worker process (the same virtual environment, ``PYTHONPATH`` pointing at
the checkout), and the driver asks both for each reply in turn, alternating which goes
first, so machine load falls on both alike. Time is the worker's process CPU time.

    git archive <base-commit> fastkokoro_wyoming | tar -x -C /tmp/base
    python bench/corpus_g2p.py --baseline /tmp/base

Prints a Markdown table; the reply texts that changed are listed below it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "data" / "replies.yaml"


def worker() -> None:
    """Answer one JSON line per text: phonemes and CPU milliseconds."""
    import fastkokoro_wyoming
    from fastkokoro_wyoming.engine.text.cleanup import clean
    from fastkokoro_wyoming.engine.text.g2p import G2P
    from fastkokoro_wyoming.engine.text.languages import LanguageTable
    from fastkokoro_wyoming.engine.text.sentences import split_sentences
    from fastkokoro_wyoming.engine.text.vocab import Vocab

    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    g2p.warm("a")
    print(json.dumps({"package": str(Path(fastkokoro_wyoming.__file__).parent)}), flush=True)
    for line in sys.stdin:
        text = json.loads(line)
        t0 = time.process_time()
        phonemes = " ".join(
            vocab.keep(g2p.phonemize(s, "a")) for s in split_sentences(clean(text), "a")
        )
        ms = (time.process_time() - t0) * 1000
        print(json.dumps({"phonemes": phonemes, "ms": ms}), flush=True)


class Worker:
    def __init__(self, checkout: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(checkout)}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.package = json.loads(self._read())["package"]

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def ask(self, text: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(text) + "\n")
        self.proc.stdin.flush()
        return json.loads(self._read())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def main() -> None:
    if "--worker" in sys.argv:
        worker()
        return
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="checkout to compare")
    parser.add_argument("--new", type=Path, default=ROOT, help="checkout (default: this one)")
    args = parser.parse_args()
    texts = [r["text"] for r in yaml.safe_load(CORPUS.read_text("utf-8"))]
    base, new = Worker(args.baseline), Worker(args.new)
    assert base.package != new.package, "both workers import the same package"
    for text in texts[:10]:  # warm both (misaki's caches, spaCy's first calls)
        base.ask(text), new.ask(text)
    rows = []
    for i, text in enumerate(texts):
        pair = (base, new) if i % 2 == 0 else (new, base)
        answers = {id(w): w.ask(text) for w in pair}
        rows.append((text, answers[id(base)], answers[id(new)]))
    base.close(), new.close()
    changed = [(t, b, n) for t, b, n in rows if b["phonemes"] != n["phonemes"]]
    b_ms = [b["ms"] for _, b, _ in rows]
    n_ms = [n["ms"] for _, _, n in rows]
    print(f"baseline: {base.package}\nnew: {new.package}\n")
    print("| | baseline | new |\n|---|---|---|")
    print(f"| replies | {len(rows)} | {len(rows)} |")
    print(f"| phonemes changed | | {len(changed)} |")
    for name, stat in (("median", statistics.median), ("mean", statistics.mean)):
        print(f"| CPU ms per reply, {name} | {stat(b_ms):.2f} | {stat(n_ms):.2f} |")
    print(f"| CPU ms, all replies | {sum(b_ms):.0f} | {sum(n_ms):.0f} |")
    print("\nChanged:\n")
    for text, b, n in changed:
        print(f"- {text!r}\n  - before: `{b['phonemes']}`\n  - after: `{n['phonemes']}`")


if __name__ == "__main__":
    main()
