"""Which request's model calls a real engine's workers started, in order.

A scheduler test on the real model cannot count the chunks its reader sees: a stream's
finished windows wait for their reader, and how many are finished ahead depends on the
machine's speed and the number of workers. What earliest-deadline-first promises is
about the *workers*: once a job is queued, no job due later starts before it. This log
records, for every job, who queued it (a context variable each test coroutine sets,
which asyncio carries into the callbacks and threads it starts), when it was queued
and when a worker took it.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

REQUEST = contextvars.ContextVar("job_log_request", default="other")


@dataclass
class Logged:
    request: str
    queued: int  # the log's step when it was queued
    started: int | None = None  # ... and when a worker took it


class JobLog:
    """Jobs in the order they were queued, with the step at which each started."""

    def __init__(self) -> None:
        self.jobs: list[Logged] = []
        self._steps = itertools.count()
        self._lock = threading.Lock()

    def step(self) -> int:
        with self._lock:
            return next(self._steps)

    def overtakers(self, request: str) -> list[tuple[Logged, Logged]]:
        """(``request``'s job, another request's job that a worker took while it waited)."""
        out = []
        for job in self.jobs:
            if job.request != request or job.started is None:
                continue
            for other in self.jobs:
                if other.request != request and other.started is not None:
                    if job.queued < other.started < job.started:
                        out.append((job, other))
        return out


@contextmanager
def job_log(scheduler: Any) -> Iterator[JobLog]:
    """Log every job ``scheduler.submit`` queues while the block runs."""
    log = JobLog()
    submit: Callable[..., Any] = scheduler.submit

    def logged_submit(fn: Callable[[], Any], *args: Any, **kw: Any) -> Any:
        entry = Logged(REQUEST.get(), log.step())
        log.jobs.append(entry)

        def run() -> Any:
            entry.started = log.step()
            return fn()

        return submit(run, *args, **kw)

    scheduler.submit = logged_submit
    try:
        yield log
    finally:
        del scheduler.submit  # the class's method again
