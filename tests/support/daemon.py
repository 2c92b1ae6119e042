"""The real daemon's test side: texts, config, and reading its Wyoming and audio answers.

The daemon runs on the test's own event loop, so anything CPU-heavy on the test side
(pocketsphinx, PyAV decoding) goes through ``asyncio.to_thread`` to keep it serving.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable

import numpy as np
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from fastkokoro_wyoming.config import Config, HttpConfig, WyomingConfig
from tests.support.engines import patient_limits
from tests.support.speech import transcribe, word_accuracy

TIMEOUT = 120.0  # one network read; generous: 2 cores shared with other test runs
# pocketsphinx's small en-us model misses a word or two of Kokoro's speech
MIN_ACCURACY = 0.8
TWO = "The weather today is sunny and warm. Please remember to water the garden."


# Six sentences (about 25 s of audio): long enough to still be synthesizing mid-test.
MUSEUM = " ".join(
    [
        "The museum opens at nine in the morning and closes at six in the evening.",
        "Visitors can buy tickets at the entrance or on the website.",
        "Guided tours leave from the main hall every hour.",
        "The cafe on the second floor serves coffee, tea and light lunches.",
        "Photography without flash is allowed in most of the galleries.",
        "Please leave large bags and umbrellas in the cloakroom.",
    ]
)


def daemon_config(engine: object) -> Config:
    """Loopback, port 0, no zeroconf; the engine back at the default 4096-character limit
    (admission bounds that no test machine reaches: ``patient_limits``)."""
    engine_cfg = dataclasses.replace(engine.cfg, limits=patient_limits())  # type: ignore[attr-defined]
    return Config(
        engine=engine_cfg,
        http=HttpConfig(host="127.0.0.1", port=0),
        wyoming=WyomingConfig(host="127.0.0.1", port=0, zeroconf=False),
    )


# --- Wyoming ---------------------------------------------------------------------------


def wyoming_client(daemon: object) -> AsyncTcpClient:
    """A fresh connection per request, as Home Assistant does (use ``async with``)."""
    return AsyncTcpClient("127.0.0.1", daemon.wyoming.port)  # type: ignore[attr-defined]


async def read_event(client: AsyncTcpClient, timeout: float = TIMEOUT) -> Event:
    """The next event; fails on a timeout or when the server closes the connection."""
    event = await asyncio.wait_for(client.read_event(), timeout)
    assert event is not None, "the server closed the connection"
    return event


async def read_until(
    client: AsyncTcpClient, *end_types: str, timeout: float = TIMEOUT
) -> list[Event]:
    """Every event up to and including the first whose type is in ``end_types``."""
    events: list[Event] = []
    while True:
        event = await read_event(client, timeout)
        events.append(event)
        if event.type in end_types:
            return events


def types_of(events: Iterable[Event]) -> list[str]:
    return [e.type for e in events]


def wyoming_audio(events: Iterable[Event]) -> np.ndarray:
    """float32 samples of every audio-chunk (checked to be 24 kHz s16le mono)."""
    parts = []
    for event in events:
        if AudioChunk.is_type(event.type):
            chunk = AudioChunk.from_event(event)
            assert (chunk.rate, chunk.width, chunk.channels) == (24000, 2, 1)
            parts.append(chunk.audio)
    return pcm16_to_float(b"".join(parts))


# --- audio -----------------------------------------------------------------------------


def pcm16_to_float(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


async def assert_says(audio: np.ndarray, text: str, rate: int = 24000) -> str:
    """pocketsphinx hears at least MIN_ACCURACY of ``text``'s words, in order."""
    assert audio.size > rate // 4, f"only {audio.size} samples"
    heard = await asyncio.to_thread(transcribe, audio, rate)
    accuracy = word_accuracy(text, heard)
    print(f"accuracy {accuracy:.2f}: {heard!r}")
    assert accuracy >= MIN_ACCURACY, f"heard {heard!r} for {text!r}"
    return heard


async def wait_idle(engine: object, deadline: float = 60.0) -> None:
    """Poll until no stream is active and nothing is queued (fails after ``deadline``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while engine.active_streams or engine.scheduler.queued:  # type: ignore[attr-defined]
        assert loop.time() < end, (
            f"engine still busy: active_streams={engine.active_streams}, "  # type: ignore[attr-defined]
            f"queued={engine.scheduler.queued}"  # type: ignore[attr-defined]
        )
        await asyncio.sleep(0.05)
