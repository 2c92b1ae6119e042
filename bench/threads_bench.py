"""Which worker/thread split serves concurrent clients best on this CPU (measure, then choose).

For each (workers, intra-op threads) pair and int8 mode, N concurrent engine requests of
the same text: time to first chunk p50/p90, aggregate audio-seconds per wall-second, and
audio-seconds per process-CPU-second (the figure that survives a machine shared with other
work). The splits and modes are interleaved: each round opens every engine in turn, so a
change in the machine's load hits them all alike; the median over rounds is printed.

    uv run --extra cpu python bench/threads_bench.py [--clients 1,4,8] [--text medium]
        [--splits 1x2,2x1,1x1] [--int8 auto,off] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections import defaultdict

from common import TEXTS, assets, pct

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import (
    DecoderConfig,
    EngineConfig,
    LimitsConfig,
    ModelConfig,
    RuntimeConfig,
)
from fastkokoro_wyoming.engine import Engine, SynthesisRequest

# admission would refuse the 4th and 8th client on 2 cores (that is its job): measure instead
UNLIMITED = LimitsConfig(
    interactive_max_wait_s=1e5, bulk_max_wait_s=1e5, bulk_realtime_share=1e3, max_streams=64
)


async def client(engine: Engine, text: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    first, samples = None, 0
    async for chunk in engine.synthesize(SynthesisRequest(text)):
        first = first or time.perf_counter() - t0
        samples += chunk.size
    return first or 0.0, samples / engine.sample_rate


async def measure(engine: Engine, text: str, n: int) -> tuple[float, float, float, float]:
    """first chunk p50, p90, audio-s per wall-s, audio-s per process-CPU-s."""
    cpu, t0 = time.process_time(), time.perf_counter()
    res = await asyncio.gather(*(client(engine, text) for _ in range(n)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    firsts = sorted(r[0] for r in res)
    audio = sum(r[1] for r in res)
    return pct(firsts, 50), pct(firsts, 90), audio / wall, audio / max(cpu, 1e-9)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--text", default="medium")
    parser.add_argument(
        "--splits", default="1x2,2x1,1x1" if (os.cpu_count() or 2) <= 2 else "1x4,2x2,4x1"
    )
    parser.add_argument("--int8", default="auto,off", help="engine.decoder.int8_convolutions")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model, voices = assets()
    text = TEXTS[args.text]
    clients = [int(c) for c in args.clients.split(",")]
    print(f"cpu_count={os.cpu_count()} text={args.text} rounds={args.rounds}")
    results: dict[tuple[str, str, int], list[tuple[float, ...]]] = defaultdict(list)
    for _ in range(args.rounds):
        for mode in args.int8.split(","):
            for split in args.splits.split(","):
                workers, threads = (int(x) for x in split.split("x"))
                cfg = EngineConfig(
                    model=ModelConfig(path=str(model), voices=str(voices)),
                    runtime=RuntimeConfig(workers=workers, intra_op_threads=threads),
                    decoder=DecoderConfig(int8_convolutions=mode),  # type: ignore[arg-type]
                    limits=UNLIMITED,
                )
                engine = await load_engine(cfg)
                for n in clients:
                    results[(mode, split, n)].append(await measure(engine, text, n))
                engine.close()
    print(
        "| int8 | workers x threads | clients | first chunk p50 s | p90 s | audio-s/wall-s "
        "| audio-s/CPU-s |"
    )
    print("|---|---|---|---|---|---|---|")
    for (mode, split, n), runs in results.items():
        p50, p90, wall, cpu = (statistics.median(r[i] for r in runs) for i in range(4))
        print(
            f"| {mode} | {split.replace('x', ' x ')} | {n} | {p50:.2f} | {p90:.2f} | {wall:.2f} "
            f"| {cpu:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    asyncio.run(main())
