"""One reply's events to the client: audio-start once, framed audio, at most one error.

Both request paths (``synthesize``, and a synthesize-start ... synthesize-stop stream)
write through an :class:`AudioOut`, which also keeps the listener's clock: Home
Assistant plays audio as it arrives, so the audio sent so far runs out at
:attr:`AudioOut.playout_end`. A stream's next sentence is due then (stream.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event

from ..engine.errors import EngineError
from ..engine.types import SAMPLE_RATE
from .framing import PcmFramer

_LOGGER = logging.getLogger(__name__)

WIDTH = 2  # s16le
CHANNELS = 1

WriteEvent = Callable[[Event], Awaitable[None]]


class AudioOut:
    """The progress of one response, so each path can end it the way HA expects."""

    def __init__(self, write_event: WriteEvent, samples_per_chunk: int) -> None:
        self._write = write_event
        self.samples_per_chunk = max(1, int(samples_per_chunk))
        self.started = False  # audio-start sent
        self.failed = False  # error event sent
        self.frames = 0
        # When the audio sent so far has played (time.monotonic), None before any.
        # Read by the engine's worker threads (a float: atomic).
        self.playout_end: float | None = None

    def framer(self) -> PcmFramer:
        """s16le frames of samples_per_chunk (one framer per engine request)."""
        return PcmFramer(self.samples_per_chunk)

    async def write(self, event: Event) -> None:
        await self._write(event)

    async def start(self) -> None:
        if not self.started:
            start = AudioStart(rate=SAMPLE_RATE, width=WIDTH, channels=CHANNELS)
            await self._write(start.event())
            self.started = True

    async def samples(self, framer: PcmFramer, samples: np.ndarray) -> None:
        for pcm in framer.push(samples):
            await self.pcm(pcm)

    async def flush(self, framer: PcmFramer) -> None:
        tail = framer.flush()
        if tail:
            await self.pcm(tail)

    async def pcm(self, pcm: bytes) -> None:
        await self.start()
        chunk = AudioChunk(rate=SAMPLE_RATE, width=WIDTH, channels=CHANNELS, audio=pcm)
        await self._write(chunk.event())
        frames = len(pcm) // (WIDTH * CHANNELS)
        self.frames += frames
        now = time.monotonic()
        end = self.playout_end
        self.playout_end = (now if end is None else max(end, now)) + frames / SAMPLE_RATE

    async def stop(self) -> None:
        """audio-stop, if audio started."""
        if self.started:
            await self._write(AudioStop().event())

    async def report(self, err: BaseException) -> None:
        """Turn a failure into one error event; a vanished client stops the worker instead."""
        if isinstance(err, ConnectionError):
            raise err
        if isinstance(err, EngineError):
            _LOGGER.info("Request refused (%s): %s", err.code, err.message)
            await self.error(err.message, err.code)
        else:
            _LOGGER.error("Synthesis failed", exc_info=err)
            await self.error(f"Internal error: {type(err).__name__}", "internal_error")

    async def error(self, text: str, code: str) -> None:
        await self._write(Error(text=text, code=code).event())
        self.failed = True
