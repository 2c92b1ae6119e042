"""GPU: the CUDA provider path end to end, beside the raw floor, and CUDA graphs on buckets.

Run on a machine with an NVIDIA GPU and onnxruntime-gpu (see docs/operations.md, "GPU"):

    python bench/gpu_bench.py --model kokoro-v1.0-int8.onnx --voices voices/ --out results/

1. **Floor**: one bare ``InferenceSession.run`` (CUDA EP, no IO binding) on the model the
   engine runs (``engine.model.weights: auto`` turns the int8 file into fp32 on a GPU), for
   8 ids and for the first segment of each text.
2. **Engine**: time to first chunk and total for short/medium/long text, with IO binding
   on and off, beside that floor (same process, same session kind).
3. **HTTP**: the daemon on CUDA, 1/4/8 concurrent streaming clients: first audio p50/p90,
   stall, throughput, /health under load.
4. **CUDA graphs** on the tiny fixed-bucket graph (``tests/tiny_models.py``): outputs equal
   to plain CUDA and CPU runs for varied inputs, and the per-call time of graph replay vs
   plain launches.

WAVs of the GPU engine's output are written to ``--out`` for a speech check elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import traceback
import wave
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, TEXTS, median  # noqa: E402
from engine_bench import engine_run  # noqa: E402

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import EngineConfig, ModelConfig, RuntimeConfig  # noqa: E402
from fastkokoro_wyoming.engine import SynthesisRequest  # noqa: E402
from fastkokoro_wyoming.engine.model.runtime import (  # noqa: E402
    KokoroSession,
    RuntimeSettings,
    import_onnxruntime,
)
from fastkokoro_wyoming.engine.serving.plan import Segment  # noqa: E402


def timed(fn, *args, n: int = 20) -> float:
    """Median seconds of ``fn(*args)`` over ``n`` calls after one untimed call."""
    fn(*args)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn(*args)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bare_session(path: Path, provider: str):
    ort = import_onnxruntime()
    return ort.InferenceSession(str(path), providers=[provider])


def bare_call(sess, c, ids: list[int], style: np.ndarray) -> None:
    """One plain ``run`` of the classic contract (what fastkokoro and kokoro-onnx do)."""
    sess.run(
        None,
        {
            c.ids: np.asarray([[0, *ids, 0]], np.int64),
            c.style: style.reshape(1, -1).astype(np.float32),
            c.speed: np.ones(1, c.speed_dtype),
        },
    )


def write_wav(path: Path, audio: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


FRESH = [  # never seen before a run: new shapes, as real traffic brings
    "Good morning.",
    "The garage door has been open for ten minutes.",
    "Your package was delivered to the front porch at a quarter past three this afternoon.",
    "It is currently fifty eight degrees outside with light rain, and the wind is coming "
    "from the north east at twelve miles per hour, so take an umbrella.",
    "Reminder: the dentist appointment is tomorrow.",
    "All the lights in the living room and the kitchen are now off.",
]

VARIANTS = {  # name -> runtime overrides of the defaults
    "default": {},  # on a GPU: DEFAULT cuDNN algos, 1 intra-op thread, IO binding, 2 workers
    "heuristic": {"provider_options": {"cuda": {"cudnn_conv_algo_search": "HEURISTIC"}}},
    "exhaustive-16threads": {
        "intra_op_threads": 16,
        "provider_options": {"cuda": {"cudnn_conv_algo_search": "EXHAUSTIVE"}},
    },
    "binding-off": {"io_binding": "off"},
}


async def engine_section(args, out: Path) -> None:
    base = EngineConfig(
        model=ModelConfig(path=str(args.model), voices=str(args.voices), cache_dir=str(args.cache)),
        runtime=RuntimeConfig(providers=(args.provider,)),
    )
    print("\n## Engine vs raw floor (ms, medians)\n")
    print(
        "| variant | text | first-segment ids | floor first ms | engine first chunk ms "
        "| ratio | engine total ms | audio s | RTF (audio/wall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    notes = []
    for variant in args.variants.split(","):
        cfg = replace(base, runtime=replace(base.runtime, **VARIANTS[variant]))
        t0 = time.perf_counter()
        engine = await load_engine(cfg)
        load_s = time.perf_counter() - t0
        prepared = engine.session.path
        bare = bare_session(prepared, engine.provider)
        names = engine.session.contract
        fresh = []
        for text in FRESH:  # first audio of texts (and shapes) the process has not seen
            fresh.append((await engine_run(engine, text))[0])
        for name, text in TEXTS.items():
            prep = engine.prepare(SynthesisRequest(text))
            first = next(s for s in engine.planner.plan(prep) if isinstance(s, Segment))
            style = prep.voice.style_for(len(first.ids))
            floor = timed(bare_call, bare, names, first.ids, style, n=args.rounds)
            runs = [await engine_run(engine, text) for _ in range(args.rounds)]
            e_first, e_total = median([r[0] for r in runs]), median([r[1] for r in runs])
            audio = runs[0][2]
            print(
                f"| {variant} | {name} | {len(first.ids)} | {1000 * floor:.1f} "
                f"| {1000 * e_first:.1f} | {e_first / floor:.2f} | {1000 * e_total:.1f} "
                f"| {audio:.1f} | {audio / e_total:.0f}x |"
            )
            if variant == "default":
                chunks = [c async for c in engine.synthesize(SynthesisRequest(text))]
                write_wav(out / f"gpu_{name}.wav", np.concatenate(chunks))
        style = engine.voice_store.resolve("af_heart").style_for(8)
        ids8 = engine.vocab.encode("hˈɛlO wˈɜɹld")[:8]
        f8 = timed(bare_call, bare, names, ids8, style)
        e8 = timed(engine.session.run, ids8, style, 1.0)
        w8 = []
        for _ in range(20):  # the same call through the scheduler's worker thread
            t1 = time.perf_counter()
            await engine.scheduler.submit(partial(engine.session.run, ids8, style, 1.0), (0,))
            w8.append(time.perf_counter() - t1)
        g2p = {n: timed(engine.phonemize, t, "a", n=3) for n, t in TEXTS.items()}
        notes.append(
            f"{variant}: G2P of the whole text "
            f"{', '.join(f'{n} {1000 * v:.0f}' for n, v in g2p.items())} ms; "
            f"{engine.scheduler.workers} workers; 8 ids bare {1000 * f8:.1f} ms, "
            f"session {1000 * e8:.1f} ms, via worker "
            f"{1000 * median(w8):.1f} ms; unseen texts first chunk "
            f"{', '.join(f'{1000 * x:.0f}' for x in fresh)} ms; load {load_s:.1f} s; "
            f"{engine.provider}, {prepared.name}"
        )
        engine.close()
    print("\n" + "\n".join(f"- {n}" for n in notes) + "\n")


async def http_section(args) -> None:
    from load_bench import run_case, start_ours, wait_ready

    print("\n## HTTP on the GPU: streaming pcm clients\n")
    print(
        "| daemon flags | text | clients | first audio p50 ms | p90 ms | stall max ms "
        "| audio-s per wall-s | /health p50 / max ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for extra in args.http_args.split(";"):
        log = Path(tempfile.mkdtemp()) / "daemon.log"
        server = start_ours(
            args.model,
            args.voices,
            18991,
            log,
            (
                "--providers",
                args.provider,
                "--engine-model-cache-dir",
                str(args.cache),
                *extra.split(),
            ),
        )
        try:
            await wait_ready(18991, server.proc)
            for name in ("short", "medium", "long"):
                for n in (1, 4, 8):
                    r = await run_case(server, TEXTS[name], n)
                    print(
                        f"| {extra or 'defaults'} | {name} | {n} | {1000 * r['ttfa_p50']:.0f} "
                        f"| {1000 * r['ttfa_p90']:.0f} | {1000 * r['stall_max']:.0f} "
                        f"| {r['throughput']:.1f} "
                        f"| {r['health_p50_ms']:.1f} / {r['health_max_ms']:.1f} |"
                    )
            print(f"| {extra or 'defaults'} | peak RSS {server.peak_rss_mb():.0f} MB | | | | | | |")
        finally:
            server.stop()
            if server.proc.returncode:
                print(log.read_text()[-2000:])


def cuda_graph_section(args) -> None:
    sys.path.insert(0, str(ROOT))
    from tests.support.tiny_models import build_bucket_model

    print("\n## CUDA graphs on the tiny fixed-bucket graph\n")
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    print("| bucket | plain CUDA us/call | CUDA graph us/call | CPU us/call | outputs equal |")
    print("|---|---|---|---|---|")
    for bucket in (16, 64):
        path = build_bucket_model(tmp / f"b{bucket}.onnx", bucket)
        base = RuntimeSettings(providers=(args.provider,), cache_dir=tmp)
        sessions = {
            "plain": KokoroSession.open(path, replace(base, io_binding="on")),
            "graph": KokoroSession.open(path, replace(base, cuda_graph=True)),
            "cpu": KokoroSession.open(path, RuntimeSettings(providers=("cpu",))),
        }
        style = rng.standard_normal(256).astype(np.float32)
        cases = [
            list(rng.integers(1, 170, size=int(rng.integers(1, bucket - 2)))) for _ in range(30)
        ]
        same = True
        for ids in cases:
            outs = [s.run(ids, style, 1.0) for s in sessions.values()]
            same &= all(o.shape == outs[2].shape and np.allclose(o, outs[2]) for o in outs)
        times = {k: timed(s.run, cases[0], style, 1.0, n=200) for k, s in sessions.items()}
        print(
            f"| {bucket} | {1e6 * times['plain']:.0f} | {1e6 * times['graph']:.0f} "
            f"| {1e6 * times['cpu']:.0f} | {same} |"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--voices", type=Path, required=True)
    parser.add_argument("--provider", default="cuda")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "fk-cache")
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sections", default="graph,engine,http")
    parser.add_argument("--variants", default="default,heuristic,exhaustive-16threads")
    parser.add_argument(
        "--http-args",
        default="",
        help="daemon flag sets to compare: space-separated flags, ';' between sets",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ort = import_onnxruntime()
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    sections = args.sections.split(",")
    for name, run in (
        ("graph", lambda: asyncio.to_thread(cuda_graph_section, args)),
        ("engine", lambda: engine_section(args, args.out)),
        ("http", lambda: http_section(args)),
    ):
        if name in sections:
            try:  # one section's failure still leaves the others' figures
                await run()
            except Exception:  # noqa: BLE001
                traceback.print_exc()


if __name__ == "__main__":
    asyncio.run(main())
