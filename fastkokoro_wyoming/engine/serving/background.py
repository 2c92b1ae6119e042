"""One-time work that runs while the engine serves: preemptible jobs and their progress.

Background work (norm-prior calibration, opening the windowed decoder) goes through the
scheduler at the lowest priority, so a worker takes it only when no request's job is
queued. A job already running when a request's job arrives would still hold the worker
for seconds (one calibration decode is a whole-generator run): :func:`preemptible` watches
the queue while the model call runs and aborts it (ONNX Runtime's ``RunOptions.terminate``,
honoured between two graph nodes: milliseconds) as soon as a request's job waits. The
aborted step is queued again and redone from the start when the engine is idle, so a
request never waits behind more than a few milliseconds of background work.

:class:`Progress` is what ``/health`` and the log say about it: what, how far, an estimate.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_LOGGER = logging.getLogger(__name__)

POLL_SECONDS = 0.004  # how often a running background job looks for a waiting request


class Preempted:
    """What a background job returns when a request's job arrived and it stopped."""

    def __repr__(self) -> str:
        return "PREEMPTED"


PREEMPTED = Preempted()


def preemptible(
    run: Callable[[Any], Any],
    new_options: Callable[[], Any],
    request_waiting: Callable[[int], bool],
) -> Callable[[], Any]:
    """A scheduler job that runs ``run(options)`` and aborts it when
    ``request_waiting(worker)`` turns true, ``worker`` being the ident of the thread that
    runs it (:meth:`Scheduler.background_should_yield`: only as many yield as requests
    wait). It returns :data:`PREEMPTED` then; the caller queues it again.

    A request already waiting when the worker picks this job up preempts it before the
    model is called at all."""

    def job() -> Any:
        worker = threading.get_ident()
        if request_waiting(worker):
            return PREEMPTED
        options = new_options()
        stop = threading.Event()
        fired = threading.Event()

        def watch() -> None:
            while not stop.wait(POLL_SECONDS):
                if request_waiting(worker):
                    fired.set()
                    options.terminate = True
                    return

        watcher = threading.Thread(target=watch, name="kokoro-preempt", daemon=True)
        watcher.start()
        try:
            return run(options)
        except Exception:
            if fired.is_set():  # ORT's "Exiting due to terminate flag": our abort
                return PREEMPTED
            raise
        finally:
            stop.set()
            watcher.join()

    return job


def in_low_priority_thread(
    work: Callable[[], Any],
    done: Callable[[Any, float], None],
    failed: Callable[[Exception], None],
) -> None:
    """Run ``work()`` in a new thread at the lowest CPU priority (nice 19: on Linux a
    thread is a task with its own nice value, so requests' threads keep theirs), then
    ``done(result, seconds)`` or ``failed(error)`` in that thread. For one-time work that
    cannot be cut into scheduler jobs (deriving the windowed graphs: onnx surgery)."""

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        t0 = time.perf_counter()
        try:
            result = work()
        except Exception as err:  # GraphNotSupported, onnx missing, disk full
            failed(err)
            return
        done(result, time.perf_counter() - t0)

    threading.Thread(target=run, name="kokoro-background", daemon=True).start()


@dataclass
class Task:
    """One piece of one-time work: ``done`` of ``total`` units, and when it began."""

    what: str
    total: int
    done: int = 0
    started: float = 0.0
    unit_seconds: float = 0.0  # a typical unit's cost, until one has been measured
    measured: float = 0.0  # seconds the finished units took (run time, not waits)

    def eta_seconds(self) -> float:
        """Seconds of work left, from the units done so far (or the typical cost)."""
        per = self.measured / self.done if self.done else self.unit_seconds
        return max(0.0, (self.total - self.done) * per)

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.what,
            "done": self.done,
            "total": self.total,
            "eta_s": round(self.eta_seconds(), 1),
        }


class Progress:
    """The engine's one-time work in progress (thread-safe), as ``/health`` lists it."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._lock = threading.Lock()

    def begin(self, key: str, what: str, total: int, unit_seconds: float = 0.0) -> Task:
        task = Task(what, total, started=time.monotonic(), unit_seconds=unit_seconds)
        with self._lock:
            self._tasks[key] = task
        return task

    def advance(self, key: str, seconds: float, log_every: int = 0) -> None:
        """One more unit of ``key`` done in ``seconds``; logs every ``log_every`` units."""
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                return
            task.done += 1
            task.measured += seconds
            say = log_every > 0 and task.done % log_every == 0 and task.done < task.total
        if say:
            _LOGGER.info(
                "%s: %d/%d done, about %.0f s of work left",
                task.what,
                task.done,
                task.total,
                task.eta_seconds(),
            )

    def end(self, key: str) -> Task | None:
        with self._lock:
            return self._tasks.pop(key, None)

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [t.as_dict() for t in self._tasks.values()]
