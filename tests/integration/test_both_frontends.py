"""Home Assistant (Wyoming) and an OpenAI client at the same time, on one daemon and engine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from openai import AsyncOpenAI
from wyoming.tts import Synthesize, SynthesizeVoice

from tests.support.daemon import (
    TIMEOUT,
    assert_says,
    pcm16_to_float,
    read_until,
    types_of,
    wyoming_audio,
    wyoming_client,
)

pytestmark = pytest.mark.integration

WYOMING_TEXT = "The kitchen lights are off. The front door is locked."
HTTP_TEXT = "Please remember to water the garden. We will meet again tomorrow morning."


async def via_wyoming(daemon) -> np.ndarray:
    async with wyoming_client(daemon) as client:
        voice = SynthesizeVoice(name="am_michael")
        await client.write_event(Synthesize(text=WYOMING_TEXT, voice=voice).event())
        events = await read_until(client, "audio-stop")
    kinds = types_of(events)
    assert kinds[0] == "audio-start" and kinds.count("audio-stop") == 1, kinds
    return wyoming_audio(events)


async def via_openai(daemon) -> np.ndarray:
    async with AsyncOpenAI(
        base_url=f"http://127.0.0.1:{daemon.http.port}/v1",
        api_key="unused",
        timeout=TIMEOUT,
        max_retries=0,
    ) as client:
        response = await client.audio.speech.create(
            model="tts-1", voice="af_heart", input=HTTP_TEXT, response_format="pcm"
        )
    return pcm16_to_float(response.content)


async def test_wyoming_and_openai_at_once(daemon, engine):
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine.active_streams)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        wyoming_pcm, http_pcm = await asyncio.wait_for(
            asyncio.gather(via_wyoming(daemon), via_openai(daemon)), 300
        )
    finally:
        watcher.cancel()
    # Both were in the engine together (not one after the other).
    assert peak == 2
    await assert_says(wyoming_pcm, WYOMING_TEXT)
    await assert_says(http_pcm, HTTP_TEXT)
