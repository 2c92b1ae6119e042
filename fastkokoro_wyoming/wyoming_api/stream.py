"""A Wyoming stream (synthesize-start, chunks, synthesize-stop) that does not wait.

Home Assistant sends an LLM's reply while it is being written. Each piece of it
(a sentence; the first clause; what was written before a stall: pacing.py) becomes one
engine request, started as soon as its text is complete, while the piece before it
still renders or plays. Its model calls are due when its audio will be needed: when
the audio already sent, and the pieces still ahead of it, have played
(``needed_at``, read by the earliest-deadline-first scheduler at each pick). So the next
sentence is ready when the listener gets to it, and it never takes the workers from
another client's first words that are due sooner.

Pieces are written in order: the audio of piece n+1 waits in memory until piece n is
sent. At most the piece being sent and ``_AHEAD`` more synthesize at once (each is an
engine stream; the engine caps those). Only the first piece may be refused (Busy);
the rest continue an admitted reply. Cancelling :meth:`StreamReply.run` (the client
left) drops every queued model call of every piece.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
from wyoming.tts import SynthesizeStopped

from ..engine.errors import Busy, EmptyText, EngineError
from ..engine.protocol import SpeechEngine
from ..engine.serving.renders import EdgeTrim
from ..engine.types import SAMPLE_RATE, SynthesisRequest
from .audio_out import AudioOut
from .framing import PcmFramer
from .pacing import Piece, StreamText, TextPieces

if TYPE_CHECKING:
    from ..config import WyomingConfig

_LOGGER = logging.getLogger(__name__)

_AHEAD = 1  # pieces synthesizing beyond the one being sent
# A piece's length before its audio is known (deadlines only): Kokoro speaks about 15
# characters a second and pads every call with ~0.75 s of silence.
_SECONDS_PER_CHAR = 0.065
_EDGE_SECONDS = 0.75

MakeRequest = Callable[[str, str | None], SynthesisRequest]  # (text, voice) -> request


@dataclass(eq=False)
class _Spoken:
    """One piece on its way: its synthesis task, and the audio it made not sent yet."""

    piece: Piece
    index: int
    arrival: float  # when its text was complete
    chunks: asyncio.Queue[np.ndarray | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    error: BaseException | None = None
    made: float = 0.0  # seconds synthesized
    sent: float = 0.0  # seconds written to the client
    done: bool = False
    plays_at: float | None = None  # when its first sample plays (fixed once sent)

    def unsent(self) -> float:
        """Seconds of it the listener has still to hear from us (estimated until done)."""
        estimate = _EDGE_SECONDS + _SECONDS_PER_CHAR * len(self.piece.text)
        total = self.made if self.done else max(self.made, estimate)
        return max(0.0, total - self.sent)


class StreamReply:
    """One stream: text in on the event loop (:meth:`add`, :meth:`finish`), audio out
    in order from :meth:`run`, which the connection's worker awaits."""

    def __init__(
        self,
        engine: SpeechEngine,
        settings: WyomingConfig,
        out: AudioOut,
        make_request: MakeRequest,
        *,
        voice: str | None,
        lang: str | None,
        error: EngineError | None = None,
        text: TextPieces | None = None,
    ) -> None:
        self._engine = engine
        self._out = out
        self._make_request = make_request
        self.voice = voice
        self.error = error  # from resolving the voice at synthesize-start
        # where the text is cut: sentences / first clause / stall (text), or whole SSML
        # sentences (text_format "ssml": wyoming_api/ssml_stream.py)
        self._text: TextPieces = text or StreamText(lang, settings.first_clause_words)
        self._stall_s = settings.stall_timeout_s
        self._stall: asyncio.TimerHandle | None = None
        self._pieces: list[_Spoken] = []
        self._next = 0  # the piece being sent
        self._closed = False  # synthesize-stop came
        self._running = False
        self._cancelled = False
        self._refused = False  # the first piece was refused: nothing else may start
        self._wake = asyncio.Event()

    # --- text in (the handler, on the loop) --------------------------------------------

    def add(self, chunk: str) -> None:
        """A synthesize-chunk: queue the pieces it completes; restart the stall clock."""
        if self._closed:
            return
        self._queue(self._text.add(chunk))
        if self._stall is not None:
            self._stall.cancel()
        if self._stall_s > 0 and self._text.pending.strip():
            loop = asyncio.get_running_loop()
            self._stall = loop.call_later(self._stall_s, self._stalled)

    def finish(self) -> None:
        """synthesize-stop: the rest is the last piece."""
        if self._closed:
            return
        self._cancel_stall()
        rest = self._text.finish()
        self._queue([rest] if rest is not None else [])
        self._closed = True
        self._wake.set()

    def _stalled(self) -> None:
        """No text for stall_timeout_s (an LLM calling a tool): speak what was written."""
        self._stall = None
        pieces = self._text.flush()
        if pieces:
            _LOGGER.debug("stream stalled: speaking %d buffered pieces", len(pieces))
        self._queue(pieces)

    def _queue(self, pieces: list[Piece]) -> None:
        now = time.monotonic()
        for piece in pieces:
            self._pieces.append(_Spoken(piece, len(self._pieces), now))
        self._start_ready()
        self._wake.set()

    def _start_ready(self) -> None:
        """Start the pieces within reach: the one being sent and _AHEAD after it, each
        once the piece before it is audible. Its G2P and first calls then never delay
        the first audio before it (on a small CPU they would: they share the cores), and
        it still has all of that piece's playing time to get ready."""
        if not self._running or self._cancelled or self._out.failed or self.error is not None:
            return
        for spoken in self._pieces[self._next : self._next + 1 + _AHEAD]:
            ahead = self._pieces[spoken.index - 1] if spoken.index > self._next else None
            if ahead is not None and ahead.made == 0 and not ahead.done:
                return
            if spoken.task is None:
                spoken.task = asyncio.create_task(
                    self._synthesize(spoken), name=f"wyoming piece {spoken.index}"
                )

    # --- deadlines (read by the engine's worker threads) -------------------------------

    def needed_at(self, spoken: _Spoken) -> float:
        """When the listener needs ``spoken``'s first sample (``time.monotonic``): once
        the audio already sent has played and the pieces ahead of it too; never before
        its text was there (it is then due on arrival, like any new request)."""
        if spoken.plays_at is not None:
            return spoken.plays_at
        pieces = self._pieces[self._next : spoken.index]  # a copy: the loop appends
        end = self._out.playout_end
        start = self._pieces[0].arrival if end is None else end
        return max(spoken.arrival, start + sum(p.unsent() for p in pieces))

    # --- synthesis: one task per piece -------------------------------------------------

    async def _synthesize(self, spoken: _Spoken) -> None:
        try:
            if spoken.index > 0 and self._refused:
                return
            request = self._make_request(spoken.piece.text, self.voice)
            prepared = self._engine.prepare(request)
            _LOGGER.debug("stream piece %d: %d chars", spoken.index, len(spoken.piece.text))
            audio = self._engine.synthesize(
                prepared,
                interactive=True,  # HA never retries: queued ahead of bulk HTTP work
                admitted=spoken.index > 0,  # the rest of a reply already admitted
                needed_at=partial(self.needed_at, spoken),
            )
            async with contextlib.aclosing(audio):  # closing drops its queued work
                async for samples in audio:
                    first = spoken.made == 0
                    spoken.made += samples.size / SAMPLE_RATE
                    spoken.chunks.put_nowait(samples)
                    if first:
                        self._start_ready()  # the next piece may start now
        except Exception as err:  # handed to the sender, which reports it in order
            spoken.error = err
            if spoken.index == 0 and isinstance(err, Busy):
                self._refused = True
        finally:
            spoken.done = True
            spoken.chunks.put_nowait(None)
            self._start_ready()

    # --- sending: the connection's worker runs this ------------------------------------

    async def run(self) -> None:
        """Write every piece's audio in order, then end the stream as HA expects."""
        self._running = True
        try:
            if self.error is not None:
                await self._out.report(self.error)
            self._start_ready()
            while (spoken := await self._next_piece()) is not None:
                if not self._out.failed:
                    await self._send(spoken)
                self._next += 1
                self._start_ready()
            await self._end()
        finally:
            running = self.cancel()
            if running:  # let each close its engine stream (that drops its model calls)
                await asyncio.wait(running)

    async def _next_piece(self) -> _Spoken | None:
        while self._next >= len(self._pieces):
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self._pieces[self._next]

    async def _send(self, spoken: _Spoken) -> None:
        """One piece, as it is made; a piece cut inside a sentence has its edges
        trimmed to a phrase pause, as the engine trims its own cuts."""
        piece = spoken.piece
        trim = EdgeTrim(piece.joins_prev, piece.joins_next)
        framer = self._out.framer()
        while (samples := await spoken.chunks.get()) is not None:
            spoken.sent += samples.size / SAMPLE_RATE
            await self._emit(spoken, framer, trim.feed(samples, last=False))
        if spoken.error is None:
            await self._emit(spoken, framer, trim.feed(np.zeros(0, np.float32), last=True))
        await self._out.flush(framer)
        if isinstance(spoken.error, EmptyText):
            _LOGGER.debug("Skipping a piece with nothing to speak: %r", piece.text)
        elif spoken.error is not None:
            await self._out.report(spoken.error)

    async def _emit(self, spoken: _Spoken, framer: PcmFramer, audio: np.ndarray) -> None:
        if not audio.size:
            return
        if spoken.plays_at is None:
            end = self._out.playout_end
            now = time.monotonic()
            spoken.plays_at = now if end is None else max(end, now)
        await self._out.samples(framer, audio)

    async def _end(self) -> None:
        """After the last piece: audio-stop if audio started, then synthesize-stopped."""
        out = self._out
        if not out.failed and out.frames == 0:
            await out.error("The text produced no audio", EmptyText.code)
        await out.stop()
        await out.write(SynthesizeStopped().event())

    def cancel(self) -> set[asyncio.Task[None]]:
        """Drop everything queued: every piece's synthesis, and the stall clock; the
        tasks still to wind down."""
        self._cancel_stall()
        self._closed = self._cancelled = True
        self._wake.set()
        running = set()
        for spoken in self._pieces:
            if spoken.task is not None and not spoken.task.done():
                spoken.task.cancel()
                running.add(spoken.task)
        return running

    def _cancel_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
