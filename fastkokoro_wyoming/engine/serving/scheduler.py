"""Model calls from every request, ordered so first audio stays fast for everyone.

A fixed pool of worker threads takes jobs from one priority queue. The engine gives
each job its deadline (earliest deadline first): the moment the audio its stream has
already delivered runs out, so a new request's first job is due now and outranks a
long narration that is ahead of real time, and long requests interleave instead of one
narration starving an announcement. The queue is bounded for new requests: a full
queue answers :class:`Busy` at once. A cancelled job leaves the queue without running.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from ..errors import Busy

_LOGGER = logging.getLogger(__name__)

# Lower first: a tuple, or a callable returning one when a worker picks its next job.
Priority = tuple[float, ...] | Callable[[], tuple[float, ...]]


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
    """Worker threads that run model calls in priority order, so each request's
    first segment goes before anyone's later ones; a bounded queue answers Busy when full,
    and a cancelled job is dropped (or aborted, if running)."""

    def __init__(self, workers: int = 1, max_queue: int = 64) -> None:
        if workers < 1:
            raise ValueError(f"a scheduler needs at least one worker thread, not {workers}")
        self.max_queue = max_queue
        self._heap: list[tuple[Priority, int, Future[Any], Callable[[], Any]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._background: set[Future[Any]] = set()
        self.before_job: Callable[[], None] | None = None  # run in the worker before a job
        self.after_job: Callable[[], None] | None = None
        self._closed = False
        self.busy_workers = 0
        # Recent model-call time (exponential average), for the admission's wait estimate.
        self.mean_job_seconds = 0.0
        self.busy_seconds = 0.0  # requests' model-call time so far (background excluded)
        self._threads = [
            threading.Thread(target=self._work, name=f"kokoro-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def queued(self) -> int:
        """Requests' model calls waiting (background work not counted)."""
        with self._cond:
            return self._foreground()

    def idle(self) -> bool:
        """Nothing queued (background included) and no worker busy."""
        with self._cond:
            return not self._heap and self.busy_workers == 0

    def _foreground(self) -> int:
        return len(self._heap) - sum(1 for e in self._heap if e[2] in self._background)

    def jobs_due_by(self, moment: float) -> int:
        """Requests' queued jobs whose deadline (a priority's first element, on the
        ``time.monotonic`` clock) is at or before ``moment``: what a new job due then
        would wait behind under earliest-deadline-first."""
        with self._cond:
            entries = [e for e in self._heap if e[2] not in self._background]
        due = 0
        for priority, *_ in entries:
            key = priority() if callable(priority) else priority
            if key and key[0] <= moment:
                due += 1
        return due

    def submit(
        self,
        fn: Callable[[], Any],
        priority: Priority,
        abort: Callable[[], None] | None = None,
        *,
        admit: bool = True,
        background: bool = False,
    ) -> Job:
        """Queue ``fn`` at ``priority`` (lower first); await ``job.result``. ``abort`` is
        called if the job is cancelled while it runs.

        ``priority`` is a tuple or a callable giving one, read each time a worker picks a
        job (a deadline that moves when its listener starts playing); it must be cheap
        and thread-safe. ``admit``: this job opens a request, so a full queue refuses it
        (Busy). The rest of an admitted request is never refused: nothing accepted is lost.
        ``background``: housekeeping (norm-prior calibration), not a request's: it neither
        counts against the bound nor in :attr:`queued`."""
        fut: Future[Any] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is closed")
            if admit and self._foreground() >= self.max_queue:
                raise Busy(f"the synthesis queue is full ({self.max_queue} segments waiting)")
            self._heap.append((priority, next(self._seq), fut, fn))
            if background:
                self._background.add(fut)
            self._cond.notify()
        fut.add_done_callback(self._discard_if_cancelled)
        return Job(fut, asyncio.wrap_future(fut), abort)

    def _discard_if_cancelled(self, fut: Future[Any]) -> None:
        """A cancelled job leaves the queue at once (its slot is free for others)."""
        if fut.cancelled():
            with self._cond:
                self._heap = [entry for entry in self._heap if entry[2] is not fut]
                self._background.discard(fut)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                _, _, fut, fn = self._heap.pop(self._next_index())
                background = fut in self._background
                self._background.discard(fut)
                if not fut.set_running_or_notify_cancel():
                    continue  # cancelled while queued: never run
                self.busy_workers += 1
            started = time.perf_counter()
            try:
                if self.before_job is not None:
                    self.before_job()  # e.g. reload a model unloaded while idle
                fut.set_result(fn())
            except BaseException as err:  # delivered to the awaiting request
                fut.set_exception(err)
            finally:
                if self.after_job is not None:
                    self.after_job()
                took = time.perf_counter() - started
                with self._cond:
                    self.busy_workers -= 1
                    mean = self.mean_job_seconds
                    self.mean_job_seconds = took if mean == 0 else 0.8 * mean + 0.2 * took
                    if not background:
                        self.busy_seconds += took

    def _next_index(self) -> int:
        """The queued job with the lowest priority now (ties: the older one). A linear
        scan: the queue holds tens of jobs, and deadlines move, so a heap would go stale."""
        best, best_key = 0, None
        for i, (priority, seq, _, _) in enumerate(self._heap):
            key = (priority() if callable(priority) else priority, seq)
            if best_key is None or key < best_key:
                best, best_key = i, key
        return best

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for _, _, fut, _ in self._heap:
                fut.cancel()
            self._heap.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)
