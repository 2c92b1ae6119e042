"""PCM kernels, NumPy vs numba: conversion, trimming, framing, and first-call cost.

Per kernel and per segment length (0.5 s ... 25 s of 24 kHz audio, what the engine yields),
the median time of one call, also given as µs per audio second. "legacy" is what the code
did before engine/serving/pcm.py (``(np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()``, and
bytearray framing in the Wyoming handler). First-call rows run in fresh processes: the first
request's conversion without warmup (numba imported and compiled then) and with it, with an
empty and a filled numba cache (``$NUMBA_CACHE_DIR``).

    uv run --extra numba python bench/pcm_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from common import median

from fastkokoro_wyoming.engine.serving.pcm import PcmKernels, numba_available
from fastkokoro_wyoming.engine.types import SAMPLE_RATE
from fastkokoro_wyoming.wyoming_api.framing import PcmFramer

SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 25.0)
CHUNK = 1024  # wyoming.samples_per_chunk default
THRESHOLD = 1e-3
STARTUP_KEYS = ("warmup_s", "numba_import_s", "first_call_s", "second_call_s", "rss_added_mb")


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """A segment as the model makes it: 120 ms of near-silence, voiced audio, 250 ms tail."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n, dtype=np.float32) / SAMPLE_RATE
    x = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x += rng.standard_normal(n) * 0.02
    head, tail = min(n // 4, int(0.12 * SAMPLE_RATE)), min(n // 4, int(0.25 * SAMPLE_RATE))
    x[:head] = rng.standard_normal(head) * 2e-4
    x[n - tail :] = rng.standard_normal(tail) * 2e-4
    return x.astype(np.float32)


def timed(fn: Callable[[], object], budget_s: float) -> float:
    """Median seconds of one call, over as many calls as fit in ``budget_s`` (3 at least)."""
    fn()
    times: list[float] = []
    spent = 0.0
    while len(times) < 3 or (spent < budget_s and len(times) < 2000):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        times.append(dt)
        spent += dt
    return median(times)


def legacy_pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def legacy_frames(chunks: list[np.ndarray]) -> int:
    size = CHUNK * 2
    pending = bytearray()
    sent = 0
    for x in chunks:
        pending += legacy_pcm(x)
        while len(pending) >= size:
            sent += len(bytes(pending[:size]))
            del pending[:size]
    return sent + len(pending)


def new_frames(chunks: list[np.ndarray], kernels: PcmKernels) -> int:
    framer = PcmFramer(CHUNK, kernels)
    sent = sum(len(f) for x in chunks for f in framer.push(x))
    return sent + len(framer.flush())


def legacy_trim(x: np.ndarray) -> slice:
    loud = np.flatnonzero(np.abs(x) > THRESHOLD)
    return slice(int(loud[0]), int(loud[-1]) + 1) if loud.size else slice(0, 0)


def steady_state(budget_s: float) -> list[dict]:
    impls: dict[str, PcmKernels] = {"numpy": PcmKernels(use_numba=False)}
    if numba_available():
        impls["numba"] = PcmKernels(use_numba=True)
    for k in impls.values():
        k.warmup()
    rows = []
    for seconds in SECONDS:
        x = speech_like(seconds)
        # the engine's chunks for one reply: this segment then a short one, twice
        chunks = [x, speech_like(0.4, 1), x, speech_like(0.4, 2)]
        audio_s = sum(c.size for c in chunks) / SAMPLE_RATE
        cases: dict[str, dict[str, Callable[[], object]]] = {
            "convert": {"legacy": lambda x=x: legacy_pcm(x)},
            "trim": {"legacy": lambda x=x: legacy_trim(x)},
            "frame": {"legacy": lambda c=chunks: legacy_frames(c)},
        }
        for name, k in impls.items():
            cases["convert"][name] = lambda x=x, k=k: k.to_pcm16(x)
            cases["trim"][name] = lambda x=x, k=k: k.trim_bounds(x, THRESHOLD)
            cases["frame"][name] = lambda c=chunks, k=k: new_frames(c, k)
        for kernel, fns in cases.items():
            per = audio_s if kernel == "frame" else seconds
            for impl, fn in fns.items():
                t = timed(fn, budget_s)
                rows.append(
                    {"kernel": kernel, "seconds": seconds, "impl": impl,
                     "us_call": t * 1e6, "us_per_audio_s": t * 1e6 / per}
                )  # fmt: skip
    return rows


_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
sys.path.insert(0, {root!r})
mode = {mode!r}
from fastkokoro_wyoming.engine.serving import pcm
from fastkokoro_wyoming.audio import float_to_pcm16
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(s.split()[1]) for s in f if s.startswith("VmRSS:")) / 1024
rss0 = rss_mb()
x = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.3
out = {{"import_s": time.perf_counter() - t0}}
if mode == "warmup":  # what Engine.warmup does at startup
    t = time.perf_counter()
    if {numba!r}:
        import numba
        out["numba_import_s"] = time.perf_counter() - t
    pcm.default_kernels().warmup()
    out["warmup_s"] = time.perf_counter() - t
t = time.perf_counter()
float_to_pcm16(x)
out["first_call_s"] = time.perf_counter() - t
t = time.perf_counter(); float_to_pcm16(x); out["second_call_s"] = time.perf_counter() - t
out["numba"] = pcm.default_kernels().numba
out["rss_added_mb"] = rss_mb() - rss0
print("RESULT " + json.dumps(out))
"""


def first_call(mode: str, cache_dir: str, force_numpy: bool) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    if force_numpy:
        env["KOKORO_PCM_KERNELS"] = "numpy"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = _CHILD.format(root=root, mode=mode, numba=not force_numpy)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def startup(repeat: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plans = [("numpy", "no warmup", True, None), ("numpy", "warmup", True, None)]
        if numba_available():
            plans += [
                ("numba, empty cache", "no warmup", False, "fresh"),
                ("numba, empty cache", "warmup", False, "fresh"),
                ("numba, cached", "no warmup", False, "kept"),
                ("numba, cached", "warmup", False, "kept"),
            ]
        kept = os.path.join(tmp, "kept")
        first_call("warmup", kept, False) if numba_available() else None  # fill the cache
        for impl, mode, force_numpy, cache in plans:
            runs = []
            for i in range(repeat):
                where = kept if cache == "kept" else os.path.join(tmp, f"fresh-{impl}-{mode}-{i}")
                runs.append(first_call(mode, where, force_numpy))
            row = {"impl": impl, "mode": mode}
            for key in STARTUP_KEYS:
                if key in runs[0]:
                    row[key] = median([r[key] for r in runs])
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timing budget, 1 repeat")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    budget = 0.05 if args.quick else 0.3

    rows = steady_state(budget)
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    print("## steady state: µs per audio second (µs per call)\n")
    print("| kernel | segment s | " + " | ".join(impls) + " |")
    print("|---|---|" + "---|" * len(impls))
    for kernel in ("convert", "trim", "frame"):
        for seconds in SECONDS:
            cells = []
            for impl in impls:
                r = next(
                    r for r in rows
                    if r["kernel"] == kernel and r["seconds"] == seconds and r["impl"] == impl
                )  # fmt: skip
                cells.append(f"{r['us_per_audio_s']:.1f} ({r['us_call']:.0f})")
            print(f"| {kernel} | {seconds:g} | " + " | ".join(cells) + " |")

    starts = startup(1 if args.quick else 3)
    print("\n## first request's conversion of 1 s, in a fresh process (median)\n")
    print(
        "| kernels | startup | warmup ms (import numba) | first call ms | second call ms "
        "| RSS +MB |"
    )
    print("|---|---|---|---|---|---|")
    for r in starts:
        warm = f"{r['warmup_s'] * 1e3:.1f}" if "warmup_s" in r else "–"
        if "numba_import_s" in r:
            warm += f" ({r['numba_import_s'] * 1e3:.0f})"
        print(
            f"| {r['impl']} | {r['mode']} | {warm} | {r['first_call_s'] * 1e3:.2f} | "
            f"{r['second_call_s'] * 1e3:.3f} | {r['rss_added_mb']:.0f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steady": rows, "startup": starts}, f, indent=1)


if __name__ == "__main__":
    main()
