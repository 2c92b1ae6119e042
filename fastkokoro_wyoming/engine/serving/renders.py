"""How one segment becomes audio: one whole model call, or a plan and its windows.

A :class:`SpeechStream` holds a queue of renders and asks each the same things: which
futures to wait on, whether a chunk is ready, and to queue more work. Every job is
queued with a deadline (``due(seconds into the segment)`` -> scheduler priority): the
moment a listener who started at the stream's start would need that audio.

* :class:`WholeRender`: today's path and the fallback: one call, one chunk.
* :class:`WindowedRender`: a short *plan* call (front graph, frame-rate decoder, phase,
  ~5 % of the model) tells the segment's exact length; then the generator runs window by
  window (engine/model/windowed/decoder.py), a few windows queued ahead, each due when the audio
  before it runs out. First audio comes after the plan and one small window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..types import SAMPLE_RATE
from .plan import JOIN_LEAD, JOIN_SILENCE_LEVEL, JOIN_TAIL, Segment
from .scheduler import Job, Priority, Scheduler
from .timing import SegmentTiming
from .trace import RequestTrace

if TYPE_CHECKING:
    from ..model.windowed.decoder import SegmentPlan, WindowedDecoder

Due = Callable[[float], Priority]  # seconds into the segment -> scheduler priority
SECONDS_PER_ID = 0.085  # a rough length until a segment's plan gives the real one
EDGE_SECONDS = 0.75  # Kokoro's silence around each call


def submit_call(
    scheduler: Scheduler,
    work: Callable[[Any], Any],
    options: Any,
    size: int,
    priority: Priority,
    trace: RequestTrace,
    *,
    admit: bool,
) -> Job:
    """Queue one model call: ``work(options)`` in a worker, traced (``size`` ids or
    frames), and aborted through ONNX Runtime's ``terminate`` flag if it is cancelled
    while it runs (the client left). Every model call of a request goes through here."""
    submitted = time.perf_counter()

    def run() -> Any:
        started = time.perf_counter()
        try:
            return work(options)
        finally:
            trace.model_call(size, submitted, started, time.perf_counter())

    def abort() -> None:
        options.terminate = True

    return scheduler.submit(run, priority, abort, admit=admit)


class Render(Protocol):
    """What :class:`SpeechStream` asks of a segment being rendered, whichever way it is
    decoded: what to wait on, to queue more work at a deadline, whether a chunk is ready,
    the chunk, and the words' timing once known."""

    @property
    def seg(self) -> Segment | None: ...

    @property
    def seconds(self) -> float:
        """Its audio length: an estimate until the model says."""
        ...

    @property
    def finished(self) -> bool:
        """Everything taken."""
        ...

    @property
    def timing(self) -> SegmentTiming | None: ...

    def futures(self) -> set[asyncio.Future[Any]]: ...

    def advance(self, due: Due) -> None: ...

    def ready(self) -> bool: ...

    def take(self) -> np.ndarray: ...

    def cancel(self) -> None: ...


def estimate_seconds(seg: Segment, speed: float) -> float:
    """Audio length of ``seg`` before anything ran (for deadlines only)."""
    return (len(seg.ids) * SECONDS_PER_ID + EDGE_SECONDS) / speed


@dataclass(frozen=True)
class WholeAudio:
    """A whole call's result: the audio as emitted (joins trimmed) and, when the segment
    carries words, how its ids map to that audio."""

    audio: np.ndarray
    timing: SegmentTiming | None = None


class WholeRender:
    """The whole segment in one model call (``engine.decoder.streaming: false``)."""

    def __init__(self, job: Job, seconds: float, seg: Segment | None = None) -> None:
        self.job = job
        self.seg = seg
        self.seconds = seconds  # an estimate; exact once the call is done
        self.known = False
        self.taken = False

    def futures(self) -> set[asyncio.Future[Any]]:
        return set() if self.job.result.done() else {self.job.result}

    def advance(self, due: Due) -> None:
        if self.job.result.done() and not self.known and not self.job.result.cancelled():
            if self.job.result.exception() is None:
                self.seconds, self.known = _audio(self.job.result.result()).size / SAMPLE_RATE, True

    def ready(self) -> bool:
        return not self.taken and self.job.result.done()

    def take(self) -> np.ndarray:
        self.taken = True
        return _audio(self.job.result.result())  # raises the call's error, if any

    @property
    def timing(self) -> SegmentTiming | None:
        """Set once the call is done, when the segment carries words."""
        done = self.job.result.done() and not self.job.result.cancelled()
        result = self.job.result.result() if done and not self.job.result.exception() else None
        return result.timing if isinstance(result, WholeAudio) else None

    @property
    def finished(self) -> bool:
        return self.taken

    def cancel(self) -> None:
        self.job.cancel()


class WindowedRender:
    """A plan job, then window jobs over the frames that are kept (joins trimmed)."""

    def __init__(
        self,
        seg: Segment,
        decoder: WindowedDecoder,
        scheduler: Scheduler,
        submit_plan: Callable[[], Job],
        speed: float,
        lookahead: int,
        trace: RequestTrace,
    ) -> None:
        self.seg = seg
        self.decoder = decoder
        self.scheduler = scheduler
        self.lookahead = lookahead
        self.trace = trace
        self.plan_job = submit_plan()
        self.seconds = estimate_seconds(seg, speed)
        self.known = False
        self.plan: SegmentPlan | None = None
        self.first_sample = 0  # of the segment's audio, after join trimming
        self.trim = (0, 0)  # samples cut off the first and last window (join trimming)
        self.submitted = 0  # windows queued so far
        self.edges = EdgeTrim(seg.joins_prev, seg.joins_next)
        self.waiting: deque[tuple[int, int]] = deque()  # window frame ranges not queued
        self.queued: deque[tuple[Job, slice]] = deque()  # in order; slice of the window

    def futures(self) -> set[asyncio.Future[Any]]:
        if not self.plan_job.result.done():
            return {self.plan_job.result}
        return {self.queued[0][0].result} if self.queued else set()

    def advance(self, due: Due) -> None:
        """Once planned: compute the kept frame range, then keep ``lookahead`` windows
        queued, each due at its place in the audio."""
        if self.plan is None:
            if not self.plan_job.result.done() or self.plan_job.result.cancelled():
                return
            if self.plan_job.result.exception() is not None:
                return  # ready() then lets take() raise it
            self._planned(self.plan_job.result.result())
        while self.waiting and len(self.queued) < self.lookahead:
            lo, hi = self.waiting.popleft()
            self.queued.append(self._submit(lo, hi, due))

    def _planned(self, plan: SegmentPlan) -> None:
        """Kokoro's edge silence is the pads' duration: inside a sentence (a cut), keep a
        phrase pause's worth of it, as :meth:`Segment.trim_join` does for whole calls."""
        self.plan = plan
        spf = plan.samples // plan.frames
        start, stop = 0, plan.samples
        if self.seg.joins_prev:
            start = max(0, int(plan.durations[0]) * spf - JOIN_LEAD)
        if self.seg.joins_next:
            stop = min(plan.samples, (plan.frames - int(plan.durations[-1])) * spf + JOIN_TAIL)
        stop = max(stop, start + spf)
        self.first_sample = start
        lo_f, hi_f = start // spf, -(-stop // spf)
        for lo, hi in self.decoder.window_bounds(hi_f - lo_f):
            a, b = lo + lo_f, hi + lo_f
            self.waiting.append((a, b))
        self.trim = (start - lo_f * spf, hi_f * spf - stop)  # samples cut at both ends
        self.seconds, self.known = (stop - start) / SAMPLE_RATE, True

    def _submit(self, lo: int, hi: int, due: Due) -> tuple[Job, slice]:
        assert self.plan is not None
        plan, spf = self.plan, self.plan.samples // self.plan.frames
        head = self.trim[0] if self.submitted == 0 else 0
        last = not self.waiting
        keep = slice(head, (hi - lo) * spf - (self.trim[1] if last else 0))
        self.submitted += 1
        offset = (lo * spf - self.first_sample) / SAMPLE_RATE
        job = submit_call(
            self.scheduler,
            lambda options: self.decoder.decode_window(plan, lo, hi, options),
            self.decoder.run_options(),
            hi - lo,
            due(max(offset, 0.0)),
            self.trace,
            admit=False,
        )
        return job, keep

    def ready(self) -> bool:
        if self.plan is None:
            return self.plan_job.result.done() and (
                self.plan_job.result.cancelled() or self.plan_job.result.exception() is not None
            )
        return bool(self.queued) and self.queued[0][0].result.done()

    def take(self) -> np.ndarray:
        """The next window's audio (join edges trimmed; may be empty while trimming)."""
        if self.plan is None:
            self.plan_job.result.result()  # raises the plan's error
            raise RuntimeError("take() before the plan")
        job, keep = self.queued.popleft()
        audio = job.result.result()[keep]
        return self.edges.feed(audio, last=not self.waiting and not self.queued)

    @property
    def finished(self) -> bool:
        return self.plan is not None and not self.waiting and not self.queued

    @property
    def timing(self) -> SegmentTiming | None:
        """Once planned: the plan's durations; the head trim is final once a chunk of
        this segment is out (leading silence is only dropped before its speech)."""
        if self.plan is None:
            return None
        spf = self.plan.samples // self.plan.frames
        return SegmentTiming(self.plan.durations, spf, self.first_sample + self.edges.dropped)

    def cancel(self) -> None:
        self.plan_job.cancel()
        for job, _ in self.queued:
            job.cancel()
        self.waiting.clear()


def _audio(result: np.ndarray | WholeAudio) -> np.ndarray:
    return result.audio if isinstance(result, WholeAudio) else result


class EdgeTrim:
    """:meth:`Segment.trim_join` for audio that arrives window by window.

    The pads' durations already bound a cut segment's frames; Kokoro's silence can run
    past them (the last punctuation is silent too), so this finds speech by level as the
    whole-call path does: leading silence is dropped up to ``JOIN_LEAD`` before the speech,
    and silence after speech is held back until more speech comes (then sent) or the
    segment ends (then ``JOIN_TAIL`` of it is kept). Speech itself is never delayed.
    """

    def __init__(self, lead: bool, tail: bool) -> None:
        self.lead = lead  # still before the first speech of a segment that continues one
        self.tail = tail
        self.held = np.empty(0, np.float32)  # silence not sent yet
        self.dropped = 0  # leading samples dropped (word timestamps shift by it)

    def feed(self, audio: np.ndarray, last: bool) -> np.ndarray:
        from .pcm import default_kernels  # the PCM kernels (numba or NumPy)

        if not (self.lead or self.tail):
            return audio
        audio = np.concatenate([self.held, audio]) if self.held.size else audio
        self.held = np.empty(0, np.float32)
        speech = default_kernels().trim_bounds(audio, JOIN_SILENCE_LEVEL)
        if speech.start == speech.stop:  # silence only so far
            if self.lead:
                self.held = audio[-JOIN_LEAD:]
                self.dropped += audio.size - self.held.size
                return np.empty(0, np.float32)
            if last:
                return audio[:JOIN_TAIL]
            self.held = audio
            return np.empty(0, np.float32)
        start = max(0, speech.start - JOIN_LEAD) if self.lead else 0
        self.dropped += start
        self.lead = False
        if not self.tail:
            return audio[start:]
        if last:
            return audio[start : min(audio.size, speech.stop + JOIN_TAIL)]
        self.held = audio[speech.stop :]
        return audio[start : speech.stop]
