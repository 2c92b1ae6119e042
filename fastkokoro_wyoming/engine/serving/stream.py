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
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import numpy as np

from ..errors import SynthesisTimeout
from ..settings import EngineConfig
from ..types import SAMPLE_RATE
from .plan import Prepared, Segment
from .renders import Due, Render
from .timing import TimedChunk, WordClock
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
        lead: float = 0.0,
        needed_at: Callable[[], float] | None = None,
    ) -> None:
        self.prep = prep
        self.lead = lead  # its jobs count as due this much earlier (interactive requests)
        # When its listener needs its first audio (``time.monotonic``), if not on arrival:
        # a later sentence of a Wyoming stream is needed when the audio before it runs out
        self.needed_at = needed_at
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
        # What the chunk just yielded came from (word timestamps): a render or a pause,
        # and how many of its samples are that source's (the rest is the gap after it).
        self.source: Render | np.ndarray | None = None
        self.from_source = 0

    async def chunks(self) -> AsyncGenerator[np.ndarray, None]:
        """Float32 chunks as they are ready; closing this drops queued work."""
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
                    self.source, self.from_source = head, head.size
                    yield head
                    continue
                if head is not None and head.ready():
                    chunk = head.take()
                    self.source, self.from_source = head, chunk.size  # before the gap
                    if head.finished:
                        self._finish_head(head.seconds)
                        chunk = self._with_gap(chunk)
                    if chunk.size:  # a window of trimmed join silence may be empty
                        self._started()
                        yield chunk
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

    async def timed_chunks(self, with_words: bool = True) -> AsyncGenerator[TimedChunk, None]:
        """:meth:`chunks` with the words each chunk finished (segments planned with
        words); a last chunk may be empty, carrying only words. ``with_words=False``: the
        same chunks with no words (the clock is not run)."""
        clock = WordClock()
        async with contextlib.aclosing(self.chunks()) as chunks:
            async for chunk in chunks:
                if not with_words:
                    yield TimedChunk(chunk, ())
                    continue
                source = self.source
                render = None if isinstance(source, np.ndarray) else source
                words = clock.advance(
                    chunk.size,
                    source,
                    self.from_source,
                    render.seg.words if render is not None and render.seg is not None else (),
                    render.timing if render is not None else None,
                    render.finished if render is not None else True,
                )
                yield TimedChunk(chunk, words)
        rest = clock.finish()
        if rest:
            yield TimedChunk(np.zeros(0, np.float32), rest)

    def _started(self) -> None:
        """A chunk goes out; the first one starts the listener's clock."""
        if not self.playing:
            self.playing = True
            self.playback_start = time.monotonic()
        self.trace.chunk()

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
    at the first chunk needs that audio, ``(playback start + position, seq)``. The
    position is fixed when the job is queued; the start moves once, from the request's
    arrival to the first chunk, so windows queued early are not due too soon."""

    def __init__(self, stream: SpeechStream, render: Render | None) -> None:
        self.stream = stream
        self.render = render

    def __call__(self, seconds: float) -> Callable[[], tuple[float, ...]]:
        stream = self.stream
        position = stream.position_of(self.render) + seconds
        seq = float(stream.seq)
        lead = stream.lead
        needed_at = stream.needed_at
        if needed_at is not None:  # the caller's timeline: read at each pick
            return lambda: (needed_at() + position - lead, seq)
        if position <= 0:
            # the first audio is due on arrival, whatever happens later
            arrival = stream.t0 - stream.lead
            return lambda: (arrival, seq)
        return lambda: (stream.playback_start + position - lead, seq)


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Mark a planning step's error as seen when its stream has already gone away."""
    if not fut.cancelled():
        fut.exception()
