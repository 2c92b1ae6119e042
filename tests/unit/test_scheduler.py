"""The scheduler (engine/serving/scheduler.py) with plain functions as model calls: the
order jobs run in (earliest deadline first, deadlines that move, background last), the
bound, cancellation and abort. One worker held by a gate job, so the test decides when
the queue drains; each test takes milliseconds."""

from __future__ import annotations

import asyncio
import random
import threading

import pytest

from fastkokoro_wyoming.engine.errors import Busy
from fastkokoro_wyoming.engine.serving.scheduler import Job, Priority, Scheduler


@pytest.fixture
def scheduler():
    s = Scheduler(workers=1, max_queue=1000)
    yield s
    s.close()


async def hold(s: Scheduler) -> tuple[threading.Event, Job]:
    """Occupy the one worker until the returned event is set."""
    gate, started = threading.Event(), threading.Event()

    def blocker() -> None:
        started.set()
        gate.wait(5)

    job = s.submit(blocker, Priority(-1e9))
    assert await asyncio.to_thread(started.wait, 5)
    return gate, job


async def test_earliest_deadline_first_and_ties_go_to_the_lower_tie_then_the_older(scheduler):
    gate, blocker = await hold(scheduler)
    order: list[str] = []
    jobs = [
        scheduler.submit(lambda n=name: order.append(n), Priority(at, tie))
        for name, at, tie in [("c", 3, 0), ("b2", 2, 1), ("a", 1, 0), ("b1", 2, 0), ("b1'", 2, 0)]
    ]
    gate.set()
    await asyncio.gather(blocker, *jobs)
    assert order == ["a", "b1", "b1'", "b2", "c"]


async def test_many_fixed_deadlines_come_out_sorted(scheduler):
    gate, blocker = await hold(scheduler)
    rng = random.Random(7)
    deadlines = [rng.uniform(0, 100) for _ in range(300)]
    order: list[float] = []
    jobs = [scheduler.submit(lambda d=d: order.append(d), Priority(d)) for d in deadlines]
    for job in jobs[::3]:  # tombstones everywhere in the heap
        job.cancel()
    gate.set()
    await asyncio.gather(blocker, *jobs[1::3], *jobs[2::3])
    kept = [d for i, d in enumerate(deadlines) if i % 3]
    assert order == sorted(kept)


async def test_a_deadline_that_moves_later_is_read_when_a_worker_picks(scheduler):
    """A stream's later jobs are due after its playback start; the start moves (later)
    when its first chunk goes out, after the jobs were queued."""
    gate, blocker = await hold(scheduler)
    playback_start = [0.0]
    order: list[str] = []
    moving = [
        scheduler.submit(lambda i=i: order.append(f"window {i}"),
                         Priority(i, 0, lambda: playback_start[0]))
        for i in (1, 2)
    ]  # fmt: skip
    fixed = scheduler.submit(lambda: order.append("fixed at 5"), Priority(5.0))
    assert scheduler.jobs_due_by(2.0) == 2
    playback_start[0] = 10.0  # the listener started at 10: windows due at 11 and 12
    assert scheduler.jobs_due_by(2.0) == 0 and scheduler.jobs_due_by(11.0) == 2
    gate.set()
    await asyncio.gather(blocker, fixed, *moving)
    assert order == ["fixed at 5", "window 1", "window 2"]


async def test_background_jobs_never_go_ahead_of_a_request(scheduler):
    gate, blocker = await hold(scheduler)
    order: list[str] = []
    background = scheduler.submit(
        lambda: order.append("calibration"), Priority(-1e12), admit=False, background=True
    )
    assert scheduler.queued == 0 and not scheduler.idle()  # not a request's, but work
    assert scheduler.jobs_due_by(0.0) == 0
    requests = [
        scheduler.submit(lambda i=i: order.append(f"request {i}"), Priority(1e12 + i))
        for i in range(3)
    ]
    gate.set()
    await asyncio.gather(blocker, background, *requests)
    assert order == ["request 0", "request 1", "request 2", "calibration"]
    assert scheduler.busy_seconds < 5  # background time is not a request's


async def test_a_request_arriving_during_background_work_goes_before_the_next_one(scheduler):
    gate, started = threading.Event(), threading.Event()
    order: list[str] = []

    def calibration_step() -> None:
        started.set()
        gate.wait(5)
        order.append("bg 0")

    first = scheduler.submit(calibration_step, Priority(0), background=True)
    second = scheduler.submit(lambda: order.append("bg 1"), Priority(0), background=True)
    assert await asyncio.to_thread(started.wait, 5)
    request = scheduler.submit(lambda: order.append("request"), Priority(1e9))
    gate.set()
    await asyncio.gather(first, second, request)
    assert order == ["bg 0", "request", "bg 1"]


async def test_a_cancelled_job_never_runs_and_frees_its_slot_at_once():
    s = Scheduler(workers=1, max_queue=2)
    try:
        gate, blocker = await hold(s)
        ran: list[int] = []
        a = s.submit(lambda: ran.append(1), Priority(1))
        b = s.submit(lambda: ran.append(2), Priority(2))
        with pytest.raises(Busy):
            s.submit(lambda: ran.append(3), Priority(3))
        a.cancel()
        assert s.queued == 1  # before any loop turn
        c = s.submit(lambda: ran.append(3), Priority(3))
        gate.set()
        await asyncio.gather(blocker, b, c)
        assert ran == [2, 3] and a.result.cancelled()
    finally:
        s.close()


async def test_cancelling_a_running_job_aborts_the_model_call(scheduler):
    aborted, started = threading.Event(), threading.Event()

    def model_call() -> str:
        started.set()
        return "aborted" if aborted.wait(5) else "ran to the end"

    job = scheduler.submit(model_call, Priority(0), abort=aborted.set)
    assert await asyncio.to_thread(started.wait, 5)
    job.cancel()
    assert aborted.is_set() and job.result.cancelled()
    assert await scheduler.submit(lambda: 42, Priority(1)) == 42  # the worker goes on
    assert scheduler.busy_workers == 0 and scheduler.idle()


async def test_full_queue_is_busy_but_background_and_admitted_work_are_not_refused():
    s = Scheduler(workers=1, max_queue=2)
    try:
        gate, blocker = await hold(s)
        a, b = s.submit(lambda: 1, Priority(1)), s.submit(lambda: 2, Priority(1))
        with pytest.raises(Busy, match="queue is full"):
            s.submit(lambda: 3, Priority(1))
        rest = s.submit(lambda: 4, Priority(1), admit=False)  # an admitted request's next job
        bg = s.submit(lambda: 5, Priority(1), admit=False, background=True)
        gate.set()
        assert await asyncio.gather(a.result, b.result, rest.result, bg.result) == [1, 2, 4, 5]
        await blocker
    finally:
        s.close()


async def test_errors_reach_the_caller_and_the_worker_survives(scheduler):
    with pytest.raises(ZeroDivisionError):
        await scheduler.submit(lambda: 1 / 0, Priority(0))
    assert await scheduler.submit(lambda: 42, Priority(0)) == 42


async def test_hooks_given_at_construction_run_around_every_job():
    calls: list[str] = []

    class Hooks:
        def before_job(self) -> None:
            calls.append("before")

        def after_job(self) -> None:
            calls.append("after")

    s = Scheduler(workers=1, hooks=Hooks())
    try:
        await s.submit(lambda: calls.append("job"), Priority(0))
        with pytest.raises(ValueError):
            await s.submit(lambda: int("x"), Priority(0))
        assert calls == ["before", "job", "after", "before", "after"]
    finally:
        s.close()


async def test_interactive_model_time_is_measured_apart(scheduler):
    await scheduler.submit(lambda: sum(range(10_000)), Priority(0, interactive=True))
    await scheduler.submit(lambda: sum(range(10_000)), Priority(0))
    assert 0 < scheduler.interactive_seconds < scheduler.busy_seconds


async def test_close_cancels_what_is_queued():
    s = Scheduler(workers=1)
    gate, blocker = await hold(s)
    queued = s.submit(lambda: 1, Priority(0))
    closing = asyncio.create_task(asyncio.to_thread(s.close))
    await asyncio.sleep(0.01)
    gate.set()
    await closing
    assert queued.result.cancelled() and (await blocker) is None
    with pytest.raises(RuntimeError, match="closed"):
        s.submit(lambda: 1, Priority(0))
