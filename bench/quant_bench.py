"""CPU: the real Kokoro model's weight forms side by side (``engine.model.weights``).

In one run: the int8 file as shipped, its fp32 rewrite (``dequantize``), and weight-only
MatMulNBits q8/q4 of that fp32 (``quantize_matmul_nbits``) with block 32 and 128 and
``accuracy_level`` 0 (fp32 compute) and 4 (int8 compute). Each variant runs in its own
process (its peak RSS is its own): the load time of the session, the median of ``--rounds``
bare calls for 8, 32 and 128 phoneme ids after one untimed call, and one sentence spoken
and transcribed by pocketsphinx (word accuracy).

    uv run --extra cpu --extra zh --extra ja --extra numba python bench/quant_bench.py \
        [--rounds 3] [--threads 2] [--work DIR] [--variants int8,fp32,q4-b32]

The rewritten files are kept in ``--work`` (default: the asset cache) and reused.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import ROOT, TEXTS, assets, median

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import EngineConfig, ModelConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.serving.plan import Segment

SENTENCE = "The museum opens at nine in the morning and closes at six in the evening."
SIZES = (8, 32, 128)
QUANT = {  # name -> (bits, block, accuracy_level)
    f"q{bits}-b{block}{'-acc4' if acc else ''}": (bits, block, acc)
    for bits in (8, 4)
    for block in (32, 128)
    for acc in (0, 4)
}
VARIANTS = ("int8", "fp32", *QUANT)


# --------------------------------------------------------------------------- variants


def with_accuracy_level(src: Path, dst: Path, level: int) -> None:
    """``src`` with ``accuracy_level`` set on every MatMulNBits (what the quantiser writes)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(src))
    for node in model.graph.node:
        if node.op_type == "MatMulNBits":
            keep = [a for a in node.attribute if a.name != "accuracy_level"]
            del node.attribute[:]
            node.attribute.extend([*keep, helper.make_attribute("accuracy_level", level)])
    onnx.save(model, str(dst))


def build(name: str, int8: Path, work: Path) -> tuple[Path, float | None]:
    """The variant's model file (written once into ``work``) and seconds spent writing it."""
    from fastkokoro_wyoming.engine.model.weights import dequantize, quantize_matmul_nbits

    if name == "int8":
        return int8, None
    out = work / f"kokoro-{name}.onnx"
    if out.is_file():
        return out, None
    t0 = time.perf_counter()
    if name == "fp32":
        dequantize(int8, out)
    else:
        bits, block, acc = QUANT[name]
        fp32, _ = build("fp32", int8, work)
        if acc:
            base, _ = build(f"q{bits}-b{block}", int8, work)
            with_accuracy_level(base, out, acc)
        else:
            quantize_matmul_nbits(fp32, out, bits=bits, block=block)
    return out, time.perf_counter() - t0


# --------------------------------------------------------------------------- inputs


async def inputs(model: Path, voices: Path, path: Path) -> None:
    """Phoneme ids and styles for the timed calls and the sentence, from the real G2P."""
    engine = await load_engine(EngineConfig(model=ModelConfig(path=str(model), voices=str(voices))))
    voice = engine.voice_store.resolve("af_heart")
    prep = engine.prepare(SynthesisRequest(TEXTS["long"]))
    pool = [i for s in engine.planner.plan(prep) if isinstance(s, Segment) for i in s.ids]
    prep = engine.prepare(SynthesisRequest(SENTENCE))
    sentence = [s.ids for s in engine.planner.plan(prep) if isinstance(s, Segment)]
    engine.close()
    arrays = {f"ids{n}": np.asarray(pool[:n]) for n in SIZES}
    arrays |= {f"style{n}": voice.style_for(n) for n in SIZES}
    arrays |= {f"sentence{i}": np.asarray(ids) for i, ids in enumerate(sentence)}
    arrays |= {f"sstyle{i}": voice.style_for(len(ids)) for i, ids in enumerate(sentence)}
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- one variant


def status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB. (``ru_maxrss`` would not do: Linux carries the
    parent's high-water mark across fork + exec, so every child would report the parent's.)"""
    with open("/proc/self/status") as f:
        line = next(x for x in f if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(model: Path, feeds: Path, out: Path, threads: int, rounds: int) -> None:
    from fastkokoro_wyoming.engine.model.runtime import KokoroSession, RuntimeSettings

    data = np.load(feeds)
    before = status_mb("VmRSS")
    t0 = time.perf_counter()
    session = KokoroSession.open(model, RuntimeSettings(intra_op_threads=threads))
    load = time.perf_counter() - t0
    result: dict[str, float] = {
        "load_s": load,
        "rss_before_mb": before,
        "rss_loaded_mb": status_mb("VmRSS"),
    }
    for n in SIZES:
        ids, style = [int(i) for i in data[f"ids{n}"]], data[f"style{n}"]
        session.run(ids, style, 1.0)  # untimed: first call of this shape
        times = []
        for _ in range(rounds):
            t1 = time.perf_counter()
            session.run(ids, style, 1.0)
            times.append(time.perf_counter() - t1)
        result[f"ms{n}"] = 1000 * median(times)
        result[f"min{n}"] = 1000 * min(times)
    audio = []
    i = 0
    while f"sentence{i}" in data:
        audio.append(session.run([int(x) for x in data[f"sentence{i}"]], data[f"sstyle{i}"], 1.0))
        i += 1
    np.save(out, np.concatenate(audio))
    result["peak_rss_mb"] = status_mb("VmHWM")
    result["loadavg"] = os.getloadavg()[0]
    print(json.dumps(result))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--feeds", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.feeds, args.out, args.threads, args.rounds)
        return

    sys.path.insert(0, str(ROOT))
    from tests.support.speech import transcribe, word_accuracy

    int8, voices = assets()
    work = args.work or int8.parent / "quant_bench"
    work.mkdir(parents=True, exist_ok=True)
    feeds = work / "feeds.npz"
    asyncio.run(inputs(int8, voices, feeds))
    print(
        f"threads={args.threads} rounds={args.rounds} cpus={os.cpu_count()} "
        f"loadavg={os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.variants.split(","):
        path, written = build(name, int8, work)
        wav = work / f"{name}.npy"
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(path),
                "--feeds",
                str(feeds),
                "--out",
                str(wav),
                "--threads",
                str(args.threads),
                "--rounds",
                str(args.rounds),
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "FASTKOKORO_LOG_LEVEL": "WARNING"},
        )
        if proc.returncode != 0:
            print(f"{name}: failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        heard = transcribe(np.load(wav))
        r |= {
            "name": name,
            "mb": path.stat().st_size / 2**20,
            "written_s": written,
            "accuracy": word_accuracy(SENTENCE, heard),
            "heard": heard,
        }
        rows.append(r)
        print(f"{name}: {json.dumps({k: v for k, v in r.items() if k != 'heard'})}", flush=True)

    print(f"\nloadavg at the end {os.getloadavg()[0]:.2f}\n")
    print(
        "| weights | file MB | load s | 8 ids ms | 32 ids ms | 128 ids ms | peak RSS MB "
        "| word accuracy |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['mb']:.0f} | {r['load_s']:.2f} | {r['ms8']:.0f} "
            f"| {r['ms32']:.0f} | {r['ms128']:.0f} | {r['peak_rss_mb']:.0f} "
            f"| {r['accuracy']:.2f} |"
        )
    print()
    for r in rows:
        note = f" (written in {r['written_s']:.1f} s)" if r["written_s"] else ""
        mins = "/".join(f"{r[f'min{n}']:.0f}" for n in SIZES)
        print(
            f"- {r['name']}{note}: RSS before load {r['rss_before_mb']:.0f} MB, after load "
            f"{r['rss_loaded_mb']:.0f} MB; min ms {mins}; 1-min loadavg {r['loadavg']:.2f}; "
            f"heard {r['heard']!r}"
        )


if __name__ == "__main__":
    main()
