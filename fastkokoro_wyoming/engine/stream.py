"""One request's way through the engine: plan ahead, queue model calls, yield audio.

:class:`SpeechStream` is created per request by :meth:`Engine.synthesize`. It keeps
up to ``lookahead`` segments planned (G2P in a thread) and queued (model calls in the
scheduler's threads) ahead of its reader, yields each segment's audio the moment it is
ready, and on cancellation or error drops everything it queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator

import numpy as np

from .errors import SynthesisTimeout
from .plan import Prepared, Segment
from .scheduler import Job
from .settings import EngineConfig
from .trace import RequestTrace
from .types import SAMPLE_RATE

# Renders a segment: (segment, request, scheduler priority, trace) -> a queued Job.
Submit = Callable[[Segment, Prepared, tuple[int, ...], RequestTrace], Job]


class SpeechStream:
    """The pipeline of one request; iterate :meth:`chunks` once."""

    def __init__(
        self,
        prep: Prepared,
        plan: Iterator[Segment | np.ndarray],
        submit: Submit,
        cfg: EngineConfig,
        seq: int,
        trace: RequestTrace,
    ) -> None:
        self.prep = prep
        self.plan = plan
        self.submit = submit
        self.seq = seq  # arrival order: ties in the scheduler go to the older request
        self.trace = trace
        self.lookahead = cfg.segmentation.lookahead
        self.limit = cfg.limits.max_request_seconds
        self.gap = np.zeros(
            int(SAMPLE_RATE * cfg.segmentation.boundary_silence_ms / 1000), dtype=np.float32
        )
        self.pending: deque[Job | np.ndarray] = deque()
        self.planning: asyncio.Future[Segment | np.ndarray | None] | None = None
        self.exhausted = False
        self.index = 0  # segments queued so far
        self.outcome = "cancelled"

    async def chunks(self) -> AsyncIterator[np.ndarray]:
        """Float32 chunks, one per segment or pause; closing this drops queued work."""
        deadline = time.monotonic() + self.limit
        try:
            while True:
                self._plan_ahead()
                head = self.pending[0] if self.pending else None
                if head is None and self.planning is None:
                    self.outcome = "done"
                    return
                if isinstance(head, np.ndarray):  # a pause: silence already, no gap
                    self.pending.popleft()
                    self.trace.chunk()
                    yield head
                    continue
                waiting = {f for f in (self.planning, head.result if head else None) if f}
                await asyncio.wait(
                    waiting,
                    timeout=max(deadline - time.monotonic(), 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                self._take_planned()
                if head is not None and head.result.done():
                    self.pending.popleft()
                    self.trace.chunk()
                    yield self._with_gap(head.result.result())
                elif time.monotonic() >= deadline:
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
            # Every request's first segment goes before anyone's later ones.
            priority = (min(self.index, 1), self.index, self.seq)
            self.pending.append(self.submit(item, self.prep, priority, self.trace))
            self.index += 1

    def _with_gap(self, audio: np.ndarray) -> np.ndarray:
        if self.gap.size and (self.pending or not self.exhausted):
            return np.concatenate([audio, self.gap])
        return audio

    def _drop(self) -> None:
        self.trace.close(self.outcome)
        for p in self.pending:
            if isinstance(p, Job):
                p.cancel()
        if self.planning is not None:
            self.planning.cancel()
        # Cancelled while a worker thread runs next(plan) (G2P): the generator cannot be
        # closed from here; it stops after that one step, as nothing asks for more.
        with contextlib.suppress(ValueError):
            self.plan.close()


def _retrieve(fut: asyncio.Future[object]) -> None:
    """Mark a planning step's error as seen when its stream has already gone away."""
    if not fut.cancelled():
        fut.exception()
