"""One request's way through the engine: plan ahead, queue model calls, yield audio.

:class:`SpeechStream` is created per request by :meth:`Engine.synthesize`. It keeps
up to ``lookahead`` segments planned (G2P in a thread) and rendering (engine/serving/renders.py:
model calls in the scheduler's threads) ahead of its reader, yields audio the moment it
is ready (a whole segment, or a decoder window), and on cancellation or error drops
everything it queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import numpy as np

from ..errors import SynthesisTimeout
from ..settings import EngineConfig
from ..types import SAMPLE_RATE
from .admission import Urgency
from .plan import Prepared, Segment
from .renders import Due, Render
from .scheduler import Priority
from .timing import Emitted, TimedChunk, WordClock
from .trace import RequestTrace

# Starts a segment's render: (segment, request, due, trace, admit) -> its render.
StartRender = Callable[[Segment, Prepared, Due, RequestTrace, bool], Render]


class SpeechStream:
    """The pipeline of one request; iterate :meth:`chunks` once.

    Deadlines: the first audio is due when the request arrives; a listener who starts
    playing at the first chunk (``playback_start``) needs second ``p`` of the stream at
    ``playback_start + p``. Every job carries its deadline (earliest first), so a stream
    ahead of real time yields the workers to one that is not, and a new request's first
    job (due now) never waits behind another's later windows.
    """

    def __init__(
        self,
        prep: Prepared,
        plan: Generator[Segment | np.ndarray, None, None],
        start_render: StartRender,
        cfg: EngineConfig,
        seq: int,
        trace: RequestTrace,
        urgency: Urgency | None = None,
        needed_at: Callable[[], float] | None = None,
    ) -> None:
        self.prep = prep
        # when its jobs are due: the first audio's, and how early the later ones are
        self.urgency = urgency or Urgency()
        # When its listener needs its first audio (``time.monotonic``), if not on arrival:
        # a later sentence of a Wyoming stream is needed when the audio before it runs out
        self.needed_at = needed_at
        self._needed_floor = -math.inf
        self.plan = plan
        self.start_render = start_render
        self.seq = seq  # arrival order: ties in the scheduler go to the older request
        self.trace = trace
        self.t0 = time.monotonic()
        # When the listener starts: the request's arrival until the first chunk is out,
        # then that moment. Read by worker threads (a float: atomic).
        self.playback_start = self.t0
        self.lookahead = cfg.segmentation.lookahead
        self.limit = cfg.limits.max_request_seconds
        self.gap = np.zeros(
            int(SAMPLE_RATE * cfg.segmentation.boundary_silence_ms / 1000), dtype=np.float32
        )
        self.pending: deque[Render | np.ndarray] = deque()
        self.planning: asyncio.Future[Segment | np.ndarray | None] | None = None
        self.exhausted = False
        self.renders = 0  # segments started so far
        self.done_seconds = 0.0  # audio of the items already finished
        self.outcome = "cancelled"
        self.playing = False  # the first chunk is out

    async def chunks(self) -> AsyncGenerator[np.ndarray, None]:
        """Float32 chunks as they are ready; closing this drops queued work."""
        async with contextlib.aclosing(self._emitted()) as emitted:
            async for chunk in emitted:
                yield chunk.audio

    async def timed_chunks(self, with_words: bool = True) -> AsyncGenerator[TimedChunk, None]:
        """:meth:`chunks` with the words each chunk finished (segments planned with
        words); a last chunk may be empty, carrying only words. ``with_words=False``: the
        same chunks with no words (the clock is not run)."""
        clock = WordClock()
        async with contextlib.aclosing(self._emitted()) as emitted:
            async for chunk in emitted:
                yield TimedChunk(chunk.audio, clock.advance(chunk) if with_words else ())
        rest = clock.finish() if with_words else ()
        if rest:
            yield TimedChunk(np.zeros(0, np.float32), rest)

    async def _emitted(self) -> AsyncGenerator[Emitted, None]:
        """The pipeline: each chunk as it is ready, with where it came from."""
        deadline = time.monotonic() + self.limit
        try:
            while True:
                self._plan_ahead()
                for item in self.pending:
                    if not isinstance(item, np.ndarray):
                        item.advance(self._due_for(item))
                head = self.pending[0] if self.pending else None
                if head is None and self.planning is None:
                    self.outcome = "done"
                    return
                if isinstance(head, np.ndarray):  # a pause: silence already, no gap
                    self._finish_head(head.size / SAMPLE_RATE)
                    self._started()
                    yield Emitted(head, head, head.size)
                    continue
                if head is not None and head.ready():
                    audio = head.take()
                    from_source = audio.size  # before the gap
                    if head.finished:
                        self._finish_head(head.seconds)
                        audio = self._with_gap(audio)
                    if audio.size:  # a window of trimmed join silence may be empty
                        self._started()
                        words = head.seg.words if head.seg is not None else ()
                        yield Emitted(audio, head, from_source, words, head.timing, head.finished)
                    continue
                if head is not None and head.finished:  # nothing left to take
                    self._finish_head(head.seconds)
                    continue
                waiting = {self.planning} if self.planning else set()
                for item in self.pending:
                    if not isinstance(item, np.ndarray):
                        waiting |= item.futures()
                if waiting:
                    await asyncio.wait(
                        waiting,
                        timeout=max(deadline - time.monotonic(), 0),
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                self._take_planned()
                if time.monotonic() >= deadline:
                    raise SynthesisTimeout(
                        f"the request ran past engine.limits.max_request_seconds ({self.limit} s)"
                    )
        except (GeneratorExit, asyncio.CancelledError):
            self.outcome = "cancelled"  # the client went away
            raise
        except BaseException as err:
            self.outcome = f"error: {getattr(err, 'code', type(err).__name__)}"
            raise
        finally:
            self._drop()

    def _started(self) -> None:
        """A chunk goes out; the first one starts the listener's clock."""
        if not self.playing:  # the start first: worker threads read both
            self.playback_start = time.monotonic()
            self.playing = True
        self.trace.chunk()

    def needed_origin(self) -> float:
        """``needed_at`` as a deadline origin: never earlier than it was (the scheduler's
        heap relies on origins that only move later; an estimate of the audio ahead that
        shrinks would otherwise move it back)."""
        assert self.needed_at is not None
        self._needed_floor = max(self._needed_floor, self.needed_at())
        return self._needed_floor

    def deadline_origin(self) -> float:
        """What a job's place in the audio is counted from (read by worker threads): until
        the first chunk is out, the moment the first audio is due (its arrival, or the
        promise it was admitted on: every job until then is a first-audio job, as a
        window of held-back silence yields nothing); then the listener's start, less the
        lead. It only moves later, which the scheduler's heap relies on."""
        urgency = self.urgency
        first = self.t0 + urgency.first_due
        if not self.playing:
            return first
        return max(first, self.playback_start - urgency.lead)

    def _finish_head(self, seconds: float) -> None:
        self.pending.popleft()
        self.done_seconds += seconds

    def _due_for(self, render: Render | None) -> _Deadline:
        return _Deadline(self, render)

    def position_of(self, render: Render | None) -> float:
        """Seconds of audio in the stream before ``render`` (after everything queued if
        it is not in the queue yet)."""
        start = self.done_seconds
        for item in self.pending:
            if item is render:
                break
            start += item.size / SAMPLE_RATE if isinstance(item, np.ndarray) else item.seconds
        return start

    def _plan_ahead(self) -> None:
        """Plan (G2P in a thread) the next segment while the head renders, up to
        ``lookahead``; the head is yielded the moment it is ready, not after the
        planning of the segments behind it."""
        if self.planning is None and not self.exhausted and len(self.pending) <= self.lookahead:
            self._plan_started = time.perf_counter()
            self.planning = asyncio.ensure_future(asyncio.to_thread(next, self.plan, None))
            self.planning.add_done_callback(_retrieve)

    def _take_planned(self) -> None:
        if self.planning is None or not self.planning.done():
            return
        item, self.planning = self.planning.result(), None
        self.trace.planned(self._plan_started)
        if item is None:
            self.exhausted = True
        elif isinstance(item, np.ndarray):
            self.pending.append(item)
        else:
            # Only a request's first job may be refused (Busy): nothing admitted is lost.
            due = self._due_for(None)
            render = self.start_render(item, self.prep, due, self.trace, self.renders == 0)
            due.render = render
            self.pending.append(render)
            self.renders += 1

    def _with_gap(self, audio: np.ndarray) -> np.ndarray:
        if self.gap.size and (self.pending or not self.exhausted):
            return np.concatenate([audio, self.gap])
        return audio

    def _drop(self) -> None:
        self.trace.close(self.outcome)
        for p in self.pending:
            if not isinstance(p, np.ndarray):
                p.cancel()
        if self.planning is not None:
            self.planning.cancel()
        # Cancelled while a worker thread runs next(plan) (G2P): the generator cannot be
        # closed from here; it stops after that one step, as nothing asks for more.
        with contextlib.suppress(ValueError):
            self.plan.close()


class _Deadline:
    """``seconds into a render`` -> the job's priority: when a listener who starts playing
    at the first chunk needs that audio (playback start + position, less the lead), ties
    to the older request. The position is fixed when the job is queued; the start moves
    once, later, from the request's arrival to the first chunk, so windows queued early
    are not due too soon. The first audio's jobs are due by the request's ``Urgency``."""

    def __init__(self, stream: SpeechStream, render: Render | None) -> None:
        self.stream = stream
        self.render = render

    def __call__(self, seconds: float) -> Priority:
        stream = self.stream
        position = stream.position_of(self.render) + seconds
        seq = float(stream.seq)
        urgency = stream.urgency
        if stream.needed_at is not None:  # the caller's timeline (a Wyoming stream's piece)
            return Priority(position - urgency.lead, seq, stream.needed_origin, urgency.interactive)
        if position <= 0:
            # the first audio is due by its arrival (or its promise), whatever happens later
            return Priority(stream.t0 + urgency.first_due, seq, None, urgency.interactive)
        return Priority(position, seq, stream.deadline_origin, urgency.interactive)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a planning step's error as seen when its stream has already gone away."""
    if not fut.cancelled():
        fut.exception()
