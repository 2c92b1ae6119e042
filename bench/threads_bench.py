"""Which worker/thread split serves concurrent clients best on this CPU (measure, then choose).

For each (workers, intra-op threads) pair, N concurrent engine requests of the same text:
time to first chunk p50/p90 and aggregate audio-seconds per wall-second, in one run.

    uv run --extra cpu python bench/threads_bench.py [--clients 1,4] [--text medium]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from common import TEXTS, assets, pct

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import EngineConfig, ModelConfig, RuntimeConfig
from fastkokoro_wyoming.engine import Engine, SynthesisRequest


async def client(engine: Engine, text: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    first, samples = None, 0
    async for chunk in engine.synthesize(SynthesisRequest(text)):
        first = first or time.perf_counter() - t0
        samples += chunk.size
    return first or 0.0, samples / engine.sample_rate


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--text", default="medium")
    parser.add_argument(
        "--splits", default="1x2,2x1,1x1" if (os.cpu_count() or 2) <= 2 else "1x4,2x2,4x1"
    )
    args = parser.parse_args()
    model, voices = assets()
    text = TEXTS[args.text]
    print(f"cpu_count={os.cpu_count()} text={args.text}")
    print("| workers x threads | clients | first chunk p50 s | p90 s | audio-s/wall-s |")
    print("|---|---|---|---|---|")
    for split in args.splits.split(","):
        workers, threads = (int(x) for x in split.split("x"))
        cfg = EngineConfig(
            model=ModelConfig(path=str(model), voices=str(voices)),
            runtime=RuntimeConfig(workers=workers, intra_op_threads=threads),
        )
        engine = await load_engine(cfg)
        for n in (int(c) for c in args.clients.split(",")):
            t0 = time.perf_counter()
            res = await asyncio.gather(*(client(engine, text) for _ in range(n)))
            wall = time.perf_counter() - t0
            firsts = sorted(r[0] for r in res)
            print(
                f"| {workers} x {threads} | {n} | {pct(firsts, 50):.2f} | {pct(firsts, 90):.2f} "
                f"| {sum(r[1] for r in res) / wall:.2f} |",
                flush=True,
            )
        engine.close()


if __name__ == "__main__":
    asyncio.run(main())
