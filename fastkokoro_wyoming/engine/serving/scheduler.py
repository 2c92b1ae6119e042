"""Model calls from every request, ordered so first audio stays fast for everyone.

A fixed pool of worker threads takes jobs from one priority queue. The engine gives
each job its deadline (earliest deadline first, :class:`Priority`): the moment the audio
its stream has already delivered runs out, so a new request's first job is due now and
outranks a long narration that is ahead of real time, and long requests interleave
instead of one narration starving an announcement. The queue is bounded for new
requests: a full queue answers :class:`Busy` at once. A cancelled job leaves the queue
without running; one cancelled while it runs is aborted. Background jobs (housekeeping,
not a request's) run only when no request's job is waiting.

The queue is a binary heap keyed by each job's deadline *as last read*. Deadlines move:
a stream's later jobs are due relative to its playback start, which moves once, later,
when its first chunk goes out. Because a deadline may only move later, the stored key
is a lower bound of the current one, so the heap can be kept lazily: a worker reads the
top's deadline again; if it moved, the job is pushed back with its new key and the next
top is read. When the top's key is current, every other job's current deadline is at
least its stored key, which is at least the top's: the top is the earliest job now.
Picking costs O(log n) plus one push per deadline that moved, not a scan of the queue.
Cancelled jobs stay in the heap as tombstones (skipped when they reach the top, swept
when they are half of it); the counts that admission and the bound read drop at once.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import Busy

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Priority:
    """When a job is due, on the ``time.monotonic`` clock: ``at`` seconds after
    ``origin()`` (a stream's playback start, read each time a worker picks), or at
    ``at`` itself when there is no origin. Earlier first; equal deadlines go to the
    lower ``tie`` (the older request), then to the job queued first.

    ``origin`` must be cheap, thread-safe, and may only ever move later (see the module
    docstring: that is what keeps the heap right). ``interactive``: the job serves a
    client with a listener waiting (Wyoming); the scheduler measures that load for the
    admission's prediction of what will arrive (engine/serving/admission.py)."""

    at: float
    tie: float = 0.0
    origin: Callable[[], float] | None = None
    interactive: bool = False

    def deadline(self) -> float:
        return self.at if self.origin is None else self.origin() + self.at


PREEMPT_SLACK_S = 0.1  # a job due this soon counts as due; the least a request waits for a worker
PREEMPT_MAX_WAIT_S = 0.25  # the most a request's due job waits before background work gives way
IDLE = Priority(math.inf)  # after every request (background work also sorts last anyway)


class JobHooks(Protocol):
    """Run in the worker around every job (idle unload: reload a model closed while idle)."""

    def before_job(self) -> None: ...
    def after_job(self) -> None: ...


@dataclass(eq=False, slots=True)
class _Entry:
    """One queued job. ``key`` is (background, deadline as last read, tie, seq): the heap
    order; background work sorts after every request's whatever its deadline."""

    key: tuple[bool, float, float, int]
    priority: Priority
    fn: Callable[[], Any]
    future: Future[Any]
    background: bool
    queued: bool = field(default=True)  # in the heap and not cancelled
    queued_at: float = field(default_factory=time.monotonic)

    def __lt__(self, other: _Entry) -> bool:
        return self.key < other.key

    def current_key(self) -> tuple[bool, float, float, int]:
        background, _, tie, seq = self.key
        return (background, self.priority.deadline(), tie, seq)


class Job:
    """A queued model call. ``cancel()`` takes it off the queue right away (an asyncio
    future's cancellation would only reach the worker queue on the next loop turn)."""

    def __init__(
        self,
        source: Future[Any],
        result: asyncio.Future[Any],
        abort: Callable[[], None] | None = None,
    ) -> None:
        self._source = source
        self.result = result
        self._abort = abort

    def cancel(self) -> None:
        if not self._source.cancel() and not self._source.done() and self._abort is not None:
            self._abort()  # already running: stop the model call itself
        self.result.cancel()

    def __await__(self):  # noqa: ANN204 - awaitable like the future it wraps
        return self.result.__await__()


class Scheduler:
    """Worker threads that run model calls in deadline order, so each request's
    first segment goes before anyone's later ones; a bounded queue answers Busy when full,
    and a cancelled job is dropped (or aborted, if running). ``hooks`` run in the worker
    before and after every job; they are fixed here, at construction."""

    def __init__(
        self, workers: int = 1, max_queue: int = 64, hooks: JobHooks | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"a scheduler needs at least one worker thread, not {workers}")
        self.max_queue = max_queue
        self._hooks = hooks
        self._heap: list[_Entry] = []
        self._waiting = {False: 0, True: 0}  # live entries by ``background``
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._busy_workers = 0
        self._busy_background = 0  # of which run background jobs
        self._yielding: set[int] = set()  # workers whose background job was told to give way
        self._last_request_end = -math.inf  # when a request's job last finished (monotonic)
        self._mean_job_seconds = 0.0  # requests' recent model-call time (exponential average)
        self._busy_seconds = 0.0  # requests' model-call time so far (background excluded)
        self._interactive_seconds = 0.0  # of which interactive requests'
        self._threads = [
            threading.Thread(target=self._work, name=f"kokoro-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    # --- what admission and /metrics read -----------------------------------------------

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Requests' model calls waiting (background work not counted)."""
        with self._cond:
            return self._waiting[False]

    @property
    def busy_workers(self) -> int:
        return self._busy_workers

    @property
    def mean_job_seconds(self) -> float:
        """Recent model-call time (exponential average), for the admission's estimate."""
        return self._mean_job_seconds

    @property
    def busy_seconds(self) -> float:
        """Requests' model-call time so far (background work excluded)."""
        return self._busy_seconds

    @property
    def interactive_seconds(self) -> float:
        """The part of :attr:`busy_seconds` spent on interactive requests' jobs."""
        return self._interactive_seconds

    def background_should_yield(self, worker: int) -> bool:
        """Whether the background job running on ``worker`` (its thread's ident) should
        give way to a request: a request's job is due (or nearly), every worker is busy,
        and the waiting jobs outnumber the background jobs already told to yield. What
        makes a running calibration decode abort (engine/serving/background.py).

        Not any queued job: one queued while a worker is free is taken by it at once; a
        stream's later windows are queued ahead of real time, due only when their audio
        will be played; and when the other worker runs a request, its job ends within a
        model call. Preempting for those aborted calibration decodes that nothing waited
        for, and restarted them from scratch: under a light steady load (a short request
        every second) a voice's priors never finished. So where every busy worker runs
        background work, one of them yields at once; where a request runs beside it, a due
        job first waits twice a model call's recent time (between :data:`PREEMPT_SLACK_S`
        and :data:`PREEMPT_MAX_WAIT_S`), the most background work costs a request. Only as
        many yield as there are jobs waiting, so one request never aborts two decodes."""
        with self._cond:
            if worker in self._yielding:
                return True
            if not self._waiting[False] or self._busy_workers < len(self._threads):
                return False
            if self._busy_background - len(self._yielding) >= self._busy_workers:
                wait = 0.0  # nothing but background runs: no request's job ends soon
            else:
                wait = min(PREEMPT_MAX_WAIT_S, max(PREEMPT_SLACK_S, 2 * self._mean_job_seconds))
            now = time.monotonic()
            wanting = sum(
                1
                for e in self._heap
                if e.queued
                and not e.background
                and now - e.queued_at >= wait
                and e.priority.deadline() <= now + PREEMPT_SLACK_S
            )
            if wanting > len(self._yielding):
                self._yielding.add(worker)
                return True
            return False

    def quiet_seconds(self) -> float:
        """How long no request's job has run or waited (0 while one does): background work
        takes every worker only after a quiet moment, so a light steady load, whose
        requests come every second or so, keeps one worker free for them."""
        with self._cond:
            if self._waiting[False] or self._busy_workers > self._busy_background:
                return 0.0
            return time.monotonic() - self._last_request_end

    def idle(self) -> bool:
        """Nothing queued (background included) and no worker busy."""
        with self._cond:
            return not (self._waiting[False] or self._waiting[True]) and self._busy_workers == 0

    def jobs_due_by(self, moment: float) -> int:
        """Requests' queued jobs whose deadline is at or before ``moment`` (on the
        ``time.monotonic`` clock): what a new job due then would wait behind under
        earliest-deadline-first. Walks only the part of the heap whose stored keys are
        that early (a stored key never exceeds the current deadline)."""
        due = 0
        with self._cond:
            heap, stack = self._heap, [0]
            while stack:
                i = stack.pop()
                if i >= len(heap):
                    continue
                entry = heap[i]
                if entry.background or entry.key[1] > moment:
                    continue  # and its whole subtree: keys only grow downwards
                if entry.queued and entry.priority.deadline() <= moment:
                    due += 1
                stack += (2 * i + 1, 2 * i + 2)
        return due

    # --- queueing -----------------------------------------------------------------------

    def submit(
        self,
        fn: Callable[[], Any],
        priority: Priority,
        abort: Callable[[], None] | None = None,
        *,
        admit: bool = True,
        background: bool = False,
    ) -> Job:
        """Queue ``fn`` at ``priority``; await ``job.result``. ``abort`` is called if the
        job is cancelled while it runs.

        ``admit``: this job opens a request, so a full queue refuses it (Busy). The rest
        of an admitted request is never refused: nothing accepted is lost.
        ``background``: housekeeping (norm-prior calibration), not a request's: it runs
        only when no request's job waits, and neither counts against the bound nor in
        :attr:`queued`."""
        fut: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            if admit and not background and self._waiting[False] >= self.max_queue:
                raise Busy(f"the synthesis queue is full ({self.max_queue} segments waiting)")
            key = (background, priority.deadline(), priority.tie, next(self._seq))
            entry = _Entry(key, priority, fn, fut, background)
            heapq.heappush(self._heap, entry)
            self._waiting[background] += 1
            self._cond.notify()
        fut.add_done_callback(lambda f: self._discard_if_cancelled(entry))
        return Job(fut, asyncio.wrap_future(fut), abort)

    def _discard_if_cancelled(self, entry: _Entry) -> None:
        """A cancelled job leaves the queue at once (its slot is free for others); its
        heap entry stays as a tombstone until it reaches the top or a sweep."""
        if not entry.future.cancelled():
            return
        with self._cond:
            if not entry.queued:
                return  # a worker had already taken it
            entry.queued = False
            self._waiting[entry.background] -= 1
            live = self._waiting[False] + self._waiting[True]
            if len(self._heap) > 32 and live < len(self._heap) // 2:
                self._heap = [e for e in self._heap if e.queued]
                heapq.heapify(self._heap)

    def _pop(self) -> _Entry | None:
        """The earliest live job now (caller holds the lock), re-keying moved deadlines."""
        heap = self._heap
        while heap:
            top = heap[0]
            if not top.queued:
                heapq.heappop(heap)  # a tombstone
                continue
            key = top.current_key()
            if key > top.key:  # its deadline moved later: back in at its new place
                top.key = key
                heapq.heapreplace(heap, top)
                continue
            heapq.heappop(heap)
            top.queued = False
            self._waiting[top.background] -= 1
            return top
        return None

    # --- the workers --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                entry = self._pop()
                while entry is None and not self._closed:
                    self._cond.wait()
                    entry = self._pop()
                if entry is None:
                    return  # closed and drained
                if not entry.future.set_running_or_notify_cancel():
                    continue  # cancelled as it was taken: never run
                self._busy_workers += 1
                self._busy_background += entry.background
            self._run(entry)

    def _run(self, entry: _Entry) -> None:
        started = time.perf_counter()
        result, error = None, None
        try:
            if self._hooks is not None:
                self._hooks.before_job()  # e.g. reload a model unloaded while idle
            result = entry.fn()
        except BaseException as err:  # delivered to the awaiting request
            error = err
        finally:
            if self._hooks is not None:
                self._hooks.after_job()
            took = time.perf_counter() - started
            with self._cond:
                self._busy_workers -= 1
                self._busy_background -= entry.background
                self._yielding.discard(threading.get_ident())
                if not entry.background:  # a calibration decode says nothing of requests'
                    self._last_request_end = time.monotonic()
                    mean = self._mean_job_seconds
                    self._mean_job_seconds = took if mean == 0 else 0.8 * mean + 0.2 * took
                    self._busy_seconds += took
                    if entry.priority.interactive:
                        self._interactive_seconds += took
        # delivered last, so whoever awaits it sees the hooks and the counts done
        if error is not None:
            entry.future.set_exception(error)
        else:
            entry.future.set_result(result)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called: nothing more is accepted."""
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            entries, self._heap = self._heap, []
            self._waiting = {False: 0, True: 0}
            for entry in entries:
                entry.queued = False
            self._cond.notify_all()
        for entry in entries:
            entry.future.cancel()
        for t in self._threads:
            t.join(timeout=30)
