"""Engine vs the raw model floor, in one run: time to first chunk and real-time factor.

For short, medium and long English text, the engine's time to first chunk and its total
time are set beside the floor on the same machine in the same run: one bare ONNX call on
the same first segment (first-audio floor) and bare calls over the same segments (total
floor). Ratios near 1.0 mean the engine adds nothing over the model itself.

    uv run --extra cpu python bench/engine_bench.py [--rounds 3] [--strategy sentence]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from common import TEXTS, assets, median

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import EngineConfig, ModelConfig, SegmentationConfig
from fastkokoro_wyoming.engine import Engine, SynthesisRequest
from fastkokoro_wyoming.engine.serving.plan import Segment


async def engine_run(engine: Engine, text: str) -> tuple[float, float, float]:
    t0 = time.perf_counter()
    first = None
    samples = 0
    async for chunk in engine.synthesize(SynthesisRequest(text)):
        first = first or time.perf_counter() - t0
        samples += chunk.size
    return first or 0.0, time.perf_counter() - t0, samples / engine.sample_rate


def floor_run(engine: Engine, text: str) -> tuple[float, float]:
    prep = engine.prepare(SynthesisRequest(text))
    segments = [s for s in engine.planner.plan(prep) if isinstance(s, Segment)]
    t0 = time.perf_counter()
    first = None
    for seg in segments:
        engine.session.run(seg.ids, prep.voice.style_for(len(seg.ids)), 1.0)
        first = first or time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--strategy", default="sentence")
    args = parser.parse_args()
    model, voices = assets()
    cfg = EngineConfig(
        model=ModelConfig(path=str(model), voices=str(voices)),
        segmentation=SegmentationConfig(strategy=args.strategy),
    )
    engine = await load_engine(cfg)
    print(f"strategy={args.strategy} provider={engine.provider} rounds={args.rounds}")
    print(
        "| text | words | audio s | engine first chunk s | floor first s | ratio "
        "| engine total s | floor total s | ratio | engine RTF (audio/wall) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, text in TEXTS.items():
        eng, flo = [], []
        for _ in range(args.rounds):
            eng.append(await engine_run(engine, text))
            flo.append(await asyncio.to_thread(floor_run, engine, text))
        e_first, e_total = median([e[0] for e in eng]), median([e[1] for e in eng])
        f_first, f_total = median([f[0] for f in flo]), median([f[1] for f in flo])
        audio = eng[0][2]
        print(
            f"| {name} | {len(text.split())} | {audio:.1f} | {e_first:.2f} | {f_first:.2f} "
            f"| {e_first / f_first:.2f} | {e_total:.2f} | {f_total:.2f} "
            f"| {e_total / f_total:.2f} | {audio / e_total:.2f}x |"
        )
    engine.close()


if __name__ == "__main__":
    asyncio.run(main())
