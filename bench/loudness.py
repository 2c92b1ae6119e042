"""Per-voice loudness before and after ``engine.loudness_lufs``, measured with pyloudnorm.

Each voice speaks the same varied sentences (none of them the texts the engine measures
voices on) twice, interleaved: through an engine with the loudness target off ("before")
and one with it on ("after"), sharing the same loaded model. Integrated loudness
(ITU-R BS.1770, pyloudnorm) over each voice's sentences together, per sentence spread,
and the sample peak.

    uv run --extra cpu python bench/loudness.py [--whole] [--out bench/results/loudness.md]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyloudnorm
from common import TEXTS, assets

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import DecoderConfig, EngineConfig, ModelConfig
from fastkokoro_wyoming.engine import Engine
from fastkokoro_wyoming.engine.types import SynthesisRequest

VOICES = ("af_heart", "af_sky", "af_nicole", "af_bella", "am_adam", "am_michael", "bf_emma",
          "bm_george")  # fmt: skip
SENTENCES = (
    TEXTS["short"],
    "Is it going to rain tomorrow afternoon, or will the sun come out?",
    "Seven hundred people signed the petition before the deadline on Friday.",
    "Whisper it quietly: the surprise party starts at eight.",
)
TARGET = -18.0


async def speak(engine: Engine, text: str, voice: str) -> np.ndarray:
    prep = engine.prepare(SynthesisRequest(text, voice=voice))
    chunks = [c async for c in engine.synthesize(prep, interactive=True, admitted=True)]
    return np.concatenate(chunks).astype(np.float64)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole", action="store_true", help="decode whole segments")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    model, voices = assets()
    cfg = EngineConfig(
        model=ModelConfig(path=str(model), voices=str(voices)),
        loudness_lufs=TARGET,
        decoder=DecoderConfig(streaming=not args.whole),
    )
    after = await load_engine(cfg)
    before = Engine(  # the same loaded parts, no loudness table: the model's own levels
        dataclasses.replace(cfg, loudness_lufs=None),
        voices=after.voice_store,
        vocab=after.vocab,
        g2p=after.g2p,
        session=after.session,
        scheduler=after.scheduler,
        languages=after.languages,
        windowed=after.windowed,
    )
    before.ready = True
    meter = pyloudnorm.Meter(24000)
    if after.windowed is not None:  # priors first: a voice is measured as it will decode
        for name in VOICES:
            await asyncio.to_thread(after.windowed.prepare_voice, name)
    t0 = time.process_time()
    for name in VOICES:  # measure first (what the server does in the background)
        assert after.loudness is not None
        await asyncio.to_thread(after.loudness.measure_now, after.voice_for(name))
    measure_cpu = (time.process_time() - t0) / len(VOICES)
    rows = []
    for name in VOICES:
        parts: dict[str, list[np.ndarray]] = {"before": [], "after": []}
        for text in SENTENCES:  # interleaved: the same text through both, back to back
            parts["before"].append(await speak(before, text, name))
            parts["after"].append(await speak(after, text, name))
        row = {"voice": name}
        for key, audio in parts.items():
            row[key] = meter.integrated_loudness(np.concatenate(audio))
            per = [meter.integrated_loudness(a) for a in audio]
            row[key + "_spread"] = max(per) - min(per)
            row[key + "_peak"] = 20 * np.log10(max(np.abs(a).max() for a in audio))
        rows.append(row)
        print(row, flush=True)
    after.close()
    spread = {k: max(r[k] for r in rows) - min(r[k] for r in rows) for k in ("before", "after")}
    worst = max(abs(r["after"] - TARGET) for r in rows)
    lines = [
        "# Per-voice loudness: before and after `engine.loudness_lufs: -18`",
        "",
        f"`bench/loudness.py{' --whole' if args.whole else ''}`, {platform.machine()}, "
        f"{'whole-segment' if args.whole else 'windowed'} decoding, the int8 model. "
        "The machine was shared with other jobs (levels do not depend on it).",
        f"Each voice: {len(SENTENCES)} varied English sentences (not the measurement texts), "
        "integrated loudness of the four together with pyloudnorm (ITU-R BS.1770-4); "
        "'spread' is the range of the four sentences' own levels; peak is the sample peak.",
        "",
        "| voice | before LUFS | after LUFS | after - target | sentence spread (after) "
        "| peak before dBFS | peak after dBFS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['voice']} | {r['before']:.1f} | {r['after']:.1f} | "
            f"{r['after'] - TARGET:+.1f} | {r['after_spread']:.1f} | {r['before_peak']:.1f} "
            f"| {r['after_peak']:.1f} |"
        )
    lines += [
        "",
        f"Spread across voices: {spread['before']:.1f} LU before, {spread['after']:.1f} LU "
        f"after; the furthest voice is {worst:.2f} LU from the target.",
        f"Measuring one voice (four short sentences, once per install, cached): "
        f"{measure_cpu:.1f} s of process CPU here.",
        f"Median per-sentence spread after: "
        f"{statistics.median(r['after_spread'] for r in rows):.1f} LU "
        "(the level of single sentences varies; the gain is per voice).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main())
