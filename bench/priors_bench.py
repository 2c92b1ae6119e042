"""How cheap can a voice's norm priors be? Calibration variants against today's priors.

Each calibration decode (one text at one forced style row, through the stats graph) is
recorded once per (anchor row, text) on a superset of rows, so every variant below is a
pooling of a subset of the same decodes: its cost is its number of decodes (and their
frames). A variant may also *transfer* the row curve of a reference voice (the default
voice, whose priors exist when any other voice is first used): the new voice's offsets
from the reference at its few anchors are interpolated, the reference's shape between
them kept (mean additive, variance in log).

Quality: windowed decoding of held-out sentences (not the calibration texts; lengths
spread over the rows real segments use) against the original model's whole call, log-mel
dB; pocketsphinx word accuracy for today's priors and the chosen variant.

    uv run --group dev --extra cpu python bench/priors_bench.py [--out bench/results/priors.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import ROOT, assets

from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder
from fastkokoro_wyoming.engine.model.windowed.graphs import derive
from fastkokoro_wyoming.engine.model.windowed.metrics import log_mel_distance_db
from fastkokoro_wyoming.engine.model.windowed.norm_stats import (
    NormPriors,
    StatsPool,
    calibration_ids,
    flatten_stats,
    transfer_priors,
)
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab

ROWS = (8, 24, 48, 80, 128, 256, 509)
HELD_OUT = [
    "Turn it off.",
    "Why did the little bird sing so loudly at dawn?",
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Photography without flash is allowed in most of the galleries, but please ask the "
    "guards first if you are not sure.",
    "After the long meeting with the architects and the builders, she drove home through "
    "the rain, made a pot of tea, and finally read the letter that had waited all week.",
]
VARIANTS = {  # name: (anchors, text indices, transfer from the reference voice)
    "today: 5 anchors x 3 texts": ((8, 48, 128, 256, 509), (0, 1, 2), False),
    "5 anchors x 1 text": ((8, 48, 128, 256, 509), (1,), False),
    "3 anchors x 2 texts": ((24, 80, 256), (1, 2), False),
    "3 anchors x 1 text": ((24, 80, 256), (1,), False),
    "1 anchor x 3 texts + transfer": ((80,), (0, 1, 2), True),
    "1 anchor x 2 texts + transfer": ((80,), (1, 2), True),
    "2 anchors x 2 texts + transfer": ((24, 128), (1, 2), True),
    "2 anchors x 1 text + transfer": ((24, 128), (1,), True),
    "3 anchors x 1 text + transfer": ((24, 80, 256), (1,), True),
}


def options() -> ort.SessionOptions:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.inter_op_num_threads = 1
    return o


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--reference", default="af_heart")
    ap.add_argument("--voices", default="am_michael,bf_emma,af_nicole")
    args = ap.parse_args()
    model, voices_dir = assets()
    tables = load_style_tables(voices_dir)
    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    cache = Path.home() / ".cache" / "fastkokoro-wyoming"
    dec = WindowedDecoder(derive(model, cache), options(), fixed_shapes=False)
    orig = ort.InferenceSession(str(model), options(), providers=["CPUExecutionProvider"])
    texts = calibration_ids("a", 3)
    count, channels = dec.graphs.norm_count, dec.graphs.channels
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    def record(table: np.ndarray) -> tuple[dict, dict]:
        """stats[(row, text)] = (frames, mean, var); seconds[(row, text)]."""
        stats, secs = {}, {}
        for row in ROWS:
            style = table[row : row + 1]
            for t, ids in enumerate(texts):
                t0 = time.process_time()
                xgen, f0, phase, _ = dec.analyse(ids, style, 1.0)
                m, v = flatten_stats(dec.exact_stats(xgen, f0, phase, style), count)
                secs[(row, t)] = time.process_time() - t0
                stats[(row, t)] = (int(xgen.shape[-1]), m, v)
        return stats, secs

    def pooled(stats: dict, anchors, idx, name: str) -> NormPriors:
        pool = StatsPool(anchors)
        for a, row in enumerate(anchors):
            for t in idx:
                pool.add(a, *stats[(row, t)])
        return pool.priors(name, channels)

    def whole(ids, style) -> np.ndarray:
        feed = {
            "tokens": np.asarray([[0, *ids, 0]], np.int64),
            "style": style,
            "speed": np.ones(1, np.float32),
        }
        return orig.run(None, feed)[0].reshape(-1)

    def windowed(ids, style, priors: NormPriors) -> np.ndarray:
        plan = dec.plan(ids, style, 1.0, priors.for_ids(len(ids)))
        return np.concatenate(list(dec.decode(plan)))

    t0 = time.perf_counter()
    ref_stats, _ = record(tables[args.reference].reshape(510, -1))
    reference = pooled(ref_stats, (8, 48, 128, 256, 509), (0, 1, 2), args.reference)
    say("# Norm priors: how cheap can calibration be?\n")
    held = ", ".join(str(len(vocab.encode(g2p.phonemize(h, "a")))) for h in HELD_OUT)
    say(
        f"Reference voice {args.reference} (today's priors); held-out sentences: "
        f"{len(HELD_OUT)} ({held} "
        "phonemes); calibration texts: the 3 built-in ones "
        f"({', '.join(str(len(t)) for t in texts)} phonemes). CPU seconds are process "
        "time (both cores), the machine shared with other helpers' runs.\n"
    )
    results: dict[str, list[float]] = {name: [] for name in VARIANTS}
    costs: dict[str, list[float]] = {name: [] for name in VARIANTS}
    audio_for: dict[tuple[str, str], list[np.ndarray]] = {}
    refs: dict[str, list[np.ndarray]] = {}
    for voice in args.voices.split(","):
        table = tables[voice].reshape(510, -1)
        stats, secs = record(table)
        cases = []
        for text in HELD_OUT:
            ids = vocab.encode(g2p.phonemize(text, "a"))
            style = table[len(ids) - 1 : len(ids)]
            cases.append((ids, style, whole(ids, style)))
        refs[voice] = [c[2] for c in cases]
        for name, (anchors, idx, transfer) in VARIANTS.items():
            priors = pooled(stats, anchors, idx, voice)
            if transfer:
                priors = transfer_priors(reference, priors)
            costs[name].append(sum(secs[(r, t)] for r in anchors for t in idx))
            audios = [windowed(ids, style, priors) for ids, style, _ in cases]
            audio_for[(name, voice)] = audios
            mels = [
                log_mel_distance_db(ref, a) for (_, _, ref), a in zip(cases, audios, strict=True)
            ]
            results[name].append(float(np.mean(mels)))
    say("| variant | decodes | CPU s per voice | log-mel dB per voice | mean |")
    say("|---|---|---|---|---|")
    for name, (anchors, idx, _) in VARIANTS.items():
        per = " / ".join(f"{m:.2f}" for m in results[name])
        say(
            f"| {name} | {len(anchors) * len(idx)} | {np.mean(costs[name]):.1f} | {per} | "
            f"{np.mean(results[name]):.2f} |"
        )
    say(f"\n(voices: {args.voices}; whole run {time.perf_counter() - t0:.0f} s)\n")
    try:
        import sys

        sys.path.insert(0, str(ROOT))
        from tests.support.speech import transcribe, word_accuracy

        say("## pocketsphinx word accuracy (held-out sentences, all voices)\n")
        say("| audio | word accuracy |")
        say("|---|---|")
        rows = {"whole call": None, **{n: n for n in VARIANTS}}
        for label, name in rows.items():
            accs = []
            for voice in args.voices.split(","):
                audios = refs[voice] if name is None else audio_for[(name, voice)]
                for text, audio in zip(HELD_OUT, audios, strict=True):
                    accs.append(word_accuracy(text, transcribe(audio)))
            say(f"| {label} | {np.mean(accs):.3f} |")
    except ImportError as err:
        say(f"(pocketsphinx not installed: {err})")
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
