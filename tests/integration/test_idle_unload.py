"""Idle unload (engine.idle_unload_s) on the real model, through the real daemon.

After the idle time the ONNX sessions are closed (RSS drops), /health stays 200 and says
``"model": "unloaded"``, /metrics counts it; four requests arriving together afterwards
cause one reload and all speak correctly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import wave
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import Config, HttpConfig, WyomingConfig
from tests.support.engines import engine_config
from tests.support.speech import transcribe, word_accuracy

pytestmark = pytest.mark.integration

TEXT = "The garden gate is open again."


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _speak(session: aiohttp.ClientSession, base: str) -> np.ndarray:
    body = {"model": "kokoro", "input": TEXT, "voice": "af_heart", "response_format": "wav"}
    async with session.post(f"{base}/v1/audio/speech", json=body) as r:
        assert r.status == 200, await r.text()
        raw = await r.read()
    with wave.open(io.BytesIO(raw)) as w:
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32767


async def _until(predicate, seconds: float) -> None:
    for _ in range(int(seconds / 0.1)):
        if predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_idle_unload_then_one_reload_for_four_requests(kokoro_assets) -> None:
    from fastkokoro_wyoming.daemon import start

    cfg = dataclasses.replace(engine_config(*kokoro_assets), idle_unload_s=1.5)
    engine = await load_engine(cfg)
    daemon = await start(
        Config(
            engine=cfg,
            http=HttpConfig(host="127.0.0.1", port=0),
            wyoming=WyomingConfig(enabled=False),
        ),
        engine=engine,
    )
    base = f"http://127.0.0.1:{daemon.http.port}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
            await _speak(s, base)
            loaded_rss = rss_mb()
            residency = engine.residency
            await _until(lambda: not residency.loaded, 30)
            unloaded_rss = rss_mb()
            print(f"RSS loaded {loaded_rss:.0f} MB, unloaded {unloaded_rss:.0f} MB")
            async with s.get(f"{base}/health") as r:
                assert r.status == 200 and (await r.json())["model"] == "unloaded"
            async with s.get(f"{base}/metrics") as r:
                text = await r.text()
            assert "fastkokoro_model_unloads_total 1.0" in text
            assert "fastkokoro_model_loaded 0.0" in text
            assert unloaded_rss < loaded_rss  # the sessions' memory went back

            audios = await asyncio.gather(*(_speak(s, base) for _ in range(4)))
            assert residency.reloads == 1 and residency.loaded
            heard = await asyncio.to_thread(transcribe, audios[0])
            assert word_accuracy(TEXT, heard) >= 0.8, heard
            assert all(abs(a.size - audios[0].size) < 2400 for a in audios)
            async with s.get(f"{base}/health") as r:
                assert (await r.json())["model"] == "loaded"
    finally:
        await daemon.stop()
