"""FastKokoro's ``timestamps=True``, on a fake engine: words travel with their bytes, and
callers that do not ask get exactly what they got before."""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from fastkokoro_wyoming.engine.serving.timing import TimedChunk, WordTiming
from fastkokoro_wyoming.python_api import FastKokoro

CHUNKS = [
    TimedChunk(np.full(2400, 0.1, np.float32), ()),
    TimedChunk(np.full(4800, 0.1, np.float32), (WordTiming("Hello", 0.05, 0.2),)),
    TimedChunk(np.zeros(0, np.float32), (WordTiming("there", 0.25, 0.3),)),
]


class TimedEngine:
    sample_rate = 24000

    def prepare(self, req: object) -> object:
        return req

    async def synthesize(self, prep: object) -> AsyncIterator[np.ndarray]:
        for chunk in CHUNKS:
            if chunk.audio.size:
                yield chunk.audio

    async def synthesize_timed(self, prep: object) -> AsyncIterator[TimedChunk]:
        for chunk in CHUNKS:
            yield chunk

    def close(self) -> None:
        pass


@pytest.fixture
def tts() -> Iterator[FastKokoro]:
    api = FastKokoro.__new__(FastKokoro)  # the engine is a fake: no model to load
    api._loop = asyncio.new_event_loop()
    api._thread = threading.Thread(target=api._loop.run_forever, daemon=True)
    api._thread.start()
    api.engine = TimedEngine()  # type: ignore[assignment]
    yield api
    api.close()


def test_create_with_timestamps_returns_the_file_and_its_words(tts: FastKokoro) -> None:
    plain = tts.create("Hello there.")
    data, words = tts.create("Hello there.", timestamps=True)
    assert data == plain  # the same complete wav
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() == 7200
    assert [w.word for w in words] == ["Hello", "there"]


def test_stream_pairs_bytes_with_the_words_they_finish(tts: FastKokoro) -> None:
    pairs = list(tts.stream("Hello there.", timestamps=True))
    assert [len(b) for b, _ in pairs] == [4800, 9600, 0]
    assert [[w.word for w in ws] for _, ws in pairs] == [[], ["Hello"], ["there"]]
    assert list(tts.stream("Hello there.")) == [b for b, _ in pairs if b]
