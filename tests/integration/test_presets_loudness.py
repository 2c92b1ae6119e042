"""Presets and one loudness on the real model, through the real Wyoming client and HTTP.

One engine for the module with two presets (one the default voice) and
``engine.loudness_lufs: -18``, decoding whole segments (``decoder.streaming: false``: the
windowed path would first calibrate norm priors for six voices, minutes of CPU here).
Levels are read back with pyloudnorm (ITU-R BS.1770). Cost: ~60-120 s on two shared
cores (about 90 s of audio synthesised, most of it the six voices' measurements), plus
~5 s for the refused start.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pyloudnorm
import pytest
import yaml
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import (
    DecoderConfig,
    EngineConfig,
    ModelConfig,
    PresetConfig,
    VoicesConfig,
)
from fastkokoro_wyoming.engine.types import SynthesisRequest
from tests.support.daemon import (
    assert_says,
    pcm16_to_float,
    read_until,
    wait_idle,
    wyoming_audio,
    wyoming_client,
)
from tests.support.tiny_daemon import serving

TARGET = -18.0
SIX = ("af_heart", "af_sky", "am_adam", "bf_emma", "am_michael", "af_nicole")
# Not the measurement's texts (engine/model/windowed/norm_stats.py): a statement, a question.
TEXT = "Turn left at the next corner and keep going until you see the bakery. Is it open today?"
SHORT = "The library closes early on Sundays during the summer."
PRESETS = {
    "grandma": PresetConfig("af_heart", speed=0.75, volume="-6dB"),
    "duo": PresetConfig("af_heart:0.6,bf_emma:0.4", language="en-GB"),
}


def lufs(audio: np.ndarray) -> float:
    return float(pyloudnorm.Meter(24000).integrated_loudness(audio.astype(np.float64)))


def speech_seconds(audio: np.ndarray) -> float:
    """Length from the first to the last sample above -40 dBFS (Kokoro pads both ends)."""
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    return (loud[-1] - loud[0]) / 24000 if loud.size else 0.0


@pytest.fixture(scope="module")
async def daemon(kokoro_assets: tuple[Path, Path]) -> AsyncIterator[object]:
    model, voices = kokoro_assets
    cfg = EngineConfig(
        default_voice="grandma",  # a preset can be the default
        model=ModelConfig(path=str(model), voices=str(voices)),
        decoder=DecoderConfig(streaming=False),
        loudness_lufs=TARGET,
        voices=VoicesConfig(presets=dict(PRESETS)),
    )
    engine = await load_engine(cfg)
    # the default voice and the presets are measured right after start, in the background
    # (a fresh cache: a few seconds each); the level checks below are about measured voices
    end = asyncio.get_running_loop().time() + 240
    while any(engine.loudness.measured(engine.voice_for(n)) is None for n in PRESETS):
        assert asyncio.get_running_loop().time() < end, "presets not measured after start"
        await asyncio.sleep(0.2)
    async with serving(engine) as d:
        yield d


async def wyoming_say(daemon: object, text: str, voice: str | None) -> np.ndarray:
    async with wyoming_client(daemon) as client:
        chosen = SynthesizeVoice(name=voice) if voice else None
        await client.write_event(Synthesize(text=text, voice=chosen).event())
        events = await read_until(client, "audio-stop", "error")
    assert events[-1].type == "audio-stop", events[-1]
    return wyoming_audio(events)


async def http_say(daemon: object, **body: object) -> np.ndarray:
    url = f"http://127.0.0.1:{daemon.http.port}/v1/audio/speech"  # type: ignore[attr-defined]
    async with aiohttp.ClientSession() as session:
        payload = {"model": "kokoro", "response_format": "pcm", **body}
        async with session.post(url, json=payload) as r:
            assert r.status == 200, await r.text()
            return pcm16_to_float(await r.read())


async def test_presets_in_info_and_voices_with_what_they_resolve_to(daemon) -> None:
    async with wyoming_client(daemon) as client:
        await client.write_event(Describe().event())
        info = Info.from_event((await read_until(client, "info"))[-1])
    voices = {v.name: v for v in info.tts[0].voices}
    assert voices["grandma"].languages == ["en-US"]
    assert voices["duo"].languages == ["en-GB"]  # the preset's language, not af_heart's
    assert "preset: af_heart" in (voices["grandma"].description or "")
    url = f"http://127.0.0.1:{daemon.http.port}/v1/audio/voices"
    async with aiohttp.ClientSession() as session, session.get(url) as r:
        listed = {v["id"]: v for v in (await r.json())["voices"]}
    assert listed["grandma"]["preset"] == {"voice": "af_heart", "speed": 0.75, "volume_db": -6.0}
    assert listed["duo"]["language"] == "en-GB" and "preset" not in listed["af_heart"]


async def test_a_preset_speaks_at_its_speed_and_level(daemon) -> None:
    heart = await wyoming_say(daemon, SHORT, "af_heart")
    grandma = await wyoming_say(daemon, SHORT, "grandma")
    default = await wyoming_say(daemon, SHORT, None)  # HA sends no voice: the default preset
    ratio = speech_seconds(grandma) / speech_seconds(heart)
    print(f"grandma/af_heart duration {ratio:.2f}; {lufs(heart):.1f} vs {lufs(grandma):.1f}")
    assert 1 / 0.75 * 0.88 < ratio < 1 / 0.75 * 1.12
    assert abs(speech_seconds(default) / speech_seconds(grandma) - 1) < 0.08
    assert lufs(grandma) - lufs(heart) == pytest.approx(-6.0, abs=1.0)
    await assert_says(grandma, SHORT)
    # an explicit HTTP speed wins over the preset's
    quick = await http_say(daemon, input=SHORT, voice="grandma", speed=1.0)
    assert abs(speech_seconds(quick) / speech_seconds(heart) - 1) < 0.12


async def test_a_blend_preset_speaks_at_the_target(daemon) -> None:
    duo = await wyoming_say(daemon, TEXT, "duo")
    print(f"duo: {lufs(duo):.1f} LUFS")
    assert lufs(duo) == pytest.approx(TARGET, abs=1.0)
    await assert_says(duo, TEXT)


async def test_six_voices_come_out_within_one_lu_of_the_target(daemon) -> None:
    engine = daemon.engine  # type: ignore[attr-defined]
    for name in SIX:  # what a request does: an unmeasured voice is queued for measuring
        engine.prepare(SynthesisRequest("Hi.", voice=name))
    loop = asyncio.get_running_loop()
    end = loop.time() + 600
    while any(engine.loudness.measured(engine.voice_for(n)) is None for n in SIX):
        assert loop.time() < end, "voices not measured in the background"
        await asyncio.sleep(0.2)
    await wait_idle(engine)
    levels = {}
    for name in SIX:  # three sentences: one sentence alone varies by +-0.7 LU per voice
        audio = await http_say(daemon, input=f"{TEXT} {SHORT}", voice=name)
        levels[name] = lufs(audio)
        assert np.abs(audio).max() <= 10 ** (-1 / 20) + 2 / 32768  # the limiter's ceiling
    print("LUFS:", {k: round(v, 2) for k, v in levels.items()})
    assert all(abs(v - TARGET) <= 1.0 for v in levels.values()), levels


async def test_volume_multiplier_doubles_the_amplitude_without_clipping(daemon) -> None:
    one = await http_say(daemon, input=SHORT, voice="af_heart")
    two = await http_say(daemon, input=SHORT, voice="af_heart", volume_multiplier=2)
    speech = np.abs(one) > 0.003
    ratio = np.median(np.abs(two)[speech]) / np.median(np.abs(one)[speech])
    print(f"median amplitude ratio {ratio:.3f}, peak {np.abs(two).max():.3f}")
    assert ratio == pytest.approx(2.0, rel=0.05)
    assert np.abs(two).max() <= 10 ** (-1 / 20) + 2 / 32768
    url = f"http://127.0.0.1:{daemon.http.port}/v1/audio/speech"
    async with aiohttp.ClientSession() as session:
        body = {"input": "Hi.", "voice": "af_heart", "volume_multiplier": 100}
        async with session.post(url, json=body) as r:
            assert r.status == 400
            assert (await r.json())["error"]["param"] == "volume_multiplier"


async def test_a_typo_in_a_preset_refuses_to_start_with_one_clear_line(
    kokoro_assets: tuple[Path, Path], tmp_path: Path
) -> None:
    model, voices = kokoro_assets
    config = {
        "engine": {
            "model": {"path": str(model), "voices": str(voices)},
            "voices": {"presets": {"grandma": {"voice": "af_hart", "speed": 0.8}}},
        },
        "wyoming": {"zeroconf": False, "port": 0},
        "http": {"port": 0},
    }
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fastkokoro_wyoming", "serve", "-c", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, stderr.decode()
    lines = [ln for ln in stderr.decode().splitlines() if "engine.voices.presets" in ln]
    assert len(lines) == 1, stderr.decode()
    assert "grandma.voice: unknown voice 'af_hart'" in lines[0]
    assert "did you mean af_heart" in lines[0], json.dumps(lines)
