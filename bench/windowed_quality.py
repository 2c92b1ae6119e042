"""The measurements behind the windowed decoder's defaults (quality and time), in one run.

* statistics schemes: exact (the segment's own), the voice prior, window-local
* calibration size: texts per anchor, anchor spacing (interpolated vs the exact row)
* window schedule: first window latency and total time / whole call, short and medium text
* derivation and calibration seconds

Quality is measured against the original model's whole call on the same segment (same
durations, so sample-aligned): log-mel distance (dB, RMS) and the largest sample jump at a
window join next to the largest inside the windows.

    uv run --extra cpu python bench/windowed_quality.py [--out bench/results/windowed-quality.md]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import TEXTS, assets

from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder, window_bounds
from fastkokoro_wyoming.engine.model.windowed.graphs import SAMPLES_PER_FRAME, derive
from fastkokoro_wyoming.engine.model.windowed.metrics import join_jumps, log_mel_distance_db
from fastkokoro_wyoming.engine.model.windowed.norm_stats import (
    DEFAULT_ANCHORS,
    calibrate,
    calibration_ids,
)
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab

HELD_OUT = [
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Why did the little bird sing so loudly at dawn?",
    "Photography without flash is allowed in most of the galleries.",
]


def options() -> ort.SessionOptions:
    o = ort.SessionOptions()
    o.intra_op_num_threads = 2
    o.inter_op_num_threads = 1
    o.enable_mem_pattern = False
    return o


def windowed(dec: WindowedDecoder, plan, bounds) -> tuple[np.ndarray, list[int]]:
    audio = np.concatenate([dec.decode_window(plan, lo, hi) for lo, hi in bounds])
    return audio, [SAMPLES_PER_FRAME * lo for lo, _ in bounds[1:]]


def window_local(dec: WindowedDecoder, plan, bounds) -> np.ndarray:
    """Each window normalised with its own statistics (the naive scheme)."""
    parts = []
    for lo, hi in bounds:
        a, b, _ = dec.span(plan.frames, lo, hi)
        s, e = 2 * a, 2 * b
        x, f, p = plan.xgen[:, :, s:e], plan.f0[:, s:e], plan.phase[:, s:e]
        x, f, p = (np.ascontiguousarray(v) for v in (x, f, p))
        stats = dec.exact_stats(x, f, p, plan.style)
        feed = {"xgen": x, "f0": f, "phase": p, "style": plan.style, **stats}
        (audio,) = dec.generator.run(["audio"], feed)
        audio = audio.reshape(-1)[SAMPLES_PER_FRAME * (lo - a) :]
        parts.append(audio[: SAMPLES_PER_FRAME * (hi - lo)])
    return np.concatenate(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--voice", default="af_heart")
    args = ap.parse_args()
    model, voices = assets()
    tables = load_style_tables(voices)
    table = tables[args.voice]
    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    lines: list[str] = []

    def say(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        graphs = derive(model, Path(tmp))
        derive_s = time.perf_counter() - t0
        dec = WindowedDecoder(graphs, options(), fixed_shapes=False)
        orig = ort.InferenceSession(str(model), options(), providers=["CPUExecutionProvider"])

        def whole(ids, style):
            feed = {
                "tokens": np.asarray([[0, *ids, 0]], np.int64),
                "style": style,
                "speed": np.ones(1, np.float32),
            }
            return orig.run(None, feed)[0].reshape(-1)

        say(f"# Windowed decoder: quality and time ({args.voice}, int8 model, CPU)\n")
        say(f"Derivation (cut, save 5 graphs, verify against the model): {derive_s:.1f} s; ")
        v = graphs.verify
        say(f"check: spectral SNR {v['snr_db']} dB, max abs {v['max_abs']}\n")

        # --- calibration: texts per anchor, anchors -----------------------------------
        texts = calibration_ids("a", 5)
        t0 = time.perf_counter()
        default = calibrate(dec, args.voice, table, texts[:3], DEFAULT_ANCHORS)
        calib_s = time.perf_counter() - t0
        say(
            f"Calibration, {len(DEFAULT_ANCHORS)} anchors x 3 texts: {calib_s:.1f} s "
            f"({calib_s / len(DEFAULT_ANCHORS) / 3:.2f} s per decode)\n"
        )
        cases = []
        for text in HELD_OUT:
            ids = vocab.encode(g2p.phonemize(text, "a"))
            style = table[len(ids) - 1 : len(ids)]
            plan = dec.plan(ids, style, 1.0, None)
            cases.append((text, ids, style, plan, whole(ids, style)))

        def quality(stats_for, bounds_for=None) -> tuple[float, float]:
            mels, ratios = [], []
            for _, ids, style, plan, ref in cases:
                p = plan if stats_for is None else dec.plan(ids, style, 1.0, stats_for(ids))
                bounds = (bounds_for or dec.window_bounds)(p.frames)
                audio, joins = windowed(dec, p, bounds)
                mels.append(log_mel_distance_db(ref, audio))
                j, inside = join_jumps(audio, joins)
                ratios.append(j / inside if joins else 0.0)
            return float(np.mean(mels)), float(np.max(ratios))

        say("## Statistics schemes (mean log-mel dB vs whole call; worst join/inside jump ratio)\n")
        say("| scheme | W=10 | W=20 | W=40 |")
        say("|---|---|---|---|")
        rows = {
            "exact (bound)": None,
            "prior (default calibration)": lambda ids: default.for_ids(len(ids)),
        }
        for name, fn in rows.items():
            cells = []
            for w in (10, 20, 40):
                m, r = quality(fn, lambda f, w=w: window_bounds(f, w, 1.0, w))
                cells.append(f"{m:.2f} / {r:.2f}")
            say(f"| {name} | {' | '.join(cells)} |")
        cells = []
        for w in (10, 20, 40):
            mels, ratios = [], []
            for _, _, _, plan, ref in cases:
                b = window_bounds(plan.frames, w, 1.0, w)
                audio = window_local(dec, plan, b)
                mels.append(log_mel_distance_db(ref, audio))
                j, inside = join_jumps(audio, [SAMPLES_PER_FRAME * lo for lo, _ in b[1:]])
                ratios.append(j / inside if len(b) > 1 else 0.0)
            cells.append(f"{np.mean(mels):.2f} / {np.max(ratios):.2f}")
        say(f"| window-local | {' | '.join(cells)} |")
        floor = np.mean([log_mel_distance_db(ref, ref * (1 + 1e-6)) for *_, ref in cases])
        say(f"\n(sanity: identical audio scores {floor:.2f} dB)\n")

        say("## Calibration size (default schedule; mean log-mel dB vs whole call)\n")
        say("| calibration | log-mel dB |")
        say("|---|---|")
        rows_used = sorted({len(c[1]) - 1 for c in cases})
        for k in (1, 3, 5):
            exact_rows = calibrate(dec, args.voice, table, texts[:k], rows_used)
            m, _ = quality(lambda ids, p=exact_rows: p.for_ids(len(ids)))
            say(f"| {k} text(s), exact rows | {m:.2f} |")
        m, _ = quality(lambda ids: default.for_ids(len(ids)))
        say(f"| 3 texts, anchors {DEFAULT_ANCHORS} (interpolated) | {m:.2f} |")
        coarse = calibrate(dec, args.voice, table, texts[:3], (8, 509))
        m, _ = quality(lambda ids: coarse.for_ids(len(ids)))
        say(f"| 3 texts, anchors (8, 509) (interpolated) | {m:.2f} |")

        # --- time ----------------------------------------------------------------------
        say("\n## Time (min of 3): first audio and total / whole call\n")
        say("| text | frames | whole call s | schedule | first audio s | total / whole |")
        say("|---|---|---|---|---|---|")
        for label in ("short", "medium"):
            ids = vocab.encode(g2p.phonemize(TEXTS[label], "a"))
            style = table[len(ids) - 1 : len(ids)]
            stats = default.for_ids(len(ids))
            tw = min(_timed(lambda ids=ids, style=style: whole(ids, style)) for _ in range(3))
            for first, growth, cap in ((10, 2.0, 80), (10, 1.6, 64), (20, 2.0, 160), (40, 1.0, 40)):
                firsts, totals = [], []
                for _ in range(3):
                    t0 = time.perf_counter()
                    plan = dec.plan(ids, style, 1.0, stats)
                    bounds = window_bounds(plan.frames, first, growth, cap)
                    dec.decode_window(plan, *bounds[0])
                    firsts.append(time.perf_counter() - t0)
                    for lo, hi in bounds[1:]:
                        dec.decode_window(plan, lo, hi)
                    totals.append(time.perf_counter() - t0)
                say(
                    f"| {label} | {plan.frames} | {tw:.2f} | {first}x{growth}<={cap} | "
                    f"{min(firsts):.2f} | {min(totals) / tw:.2f} |"
                )
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
