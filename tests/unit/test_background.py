"""Background jobs give way to requests at once; their progress is what /health lists."""

from __future__ import annotations

import threading
import time

import pytest

from fastkokoro_wyoming.engine.serving.background import PREEMPTED, Progress, preemptible


class Options:
    """ORT's RunOptions as the job sees it: a ``terminate`` flag set from another thread."""

    terminate = False


def model_call(started: threading.Event | None = None, seconds: float = 5.0):
    """A fake model call that runs until ``seconds`` pass or ``terminate`` is set (then
    raises, as ORT does: "Exiting due to terminate flag being set to true")."""

    def run(options: Options) -> str:
        if started is not None:
            started.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if options.terminate:
                raise RuntimeError("Exiting due to terminate flag being set to true.")
            time.sleep(0.001)
        return "stats"

    return run


def test_a_job_with_no_request_waiting_runs_to_the_end() -> None:
    job = preemptible(model_call(seconds=0.02), Options, lambda _worker: False)
    assert job() == "stats"


def test_a_request_arriving_aborts_the_running_job() -> None:
    started, waiting = threading.Event(), threading.Event()
    job = preemptible(model_call(started), Options, lambda _worker: waiting.is_set())
    out: list[object] = []
    worker = threading.Thread(target=lambda: out.append(job()))
    worker.start()
    assert started.wait(5)
    waiting.set()  # a request's job is queued now
    worker.join(5)
    assert out == [PREEMPTED]


def test_a_request_already_waiting_means_the_model_is_not_called() -> None:
    calls: list[Options] = []
    job = preemptible(lambda options: calls.append(options), Options, lambda _worker: True)
    assert job() is PREEMPTED and calls == []


def test_other_errors_still_reach_the_caller() -> None:
    def broken(options: Options) -> None:
        raise ValueError("bad graph")

    with pytest.raises(ValueError, match="bad graph"):
        preemptible(broken, Options, lambda _worker: False)()


def test_progress_lists_what_is_left_with_an_estimate() -> None:
    progress = Progress()
    progress.begin("priors:am_adam", "Norm priors for am_adam", total=4, unit_seconds=1.0)
    assert progress.pending() == [
        {"task": "Norm priors for am_adam", "done": 0, "total": 4, "eta_s": 4.0}
    ]
    progress.advance("priors:am_adam", 0.5)  # measured: half the typical cost
    assert progress.pending()[0]["eta_s"] == 1.5 and progress.pending()[0]["done"] == 1
    progress.end("priors:am_adam")
    assert progress.pending() == []


async def test_a_request_a_free_worker_takes_does_not_abort_background_work() -> None:
    """Two workers, one running a calibration decode: a request's job goes to the free one
    and the decode finishes; with both workers busy, a job due now makes it give way, one
    due later (a window queued ahead of playback) does not. (The rule had been "any request
    queued", which a light steady load hit every second: priors never finished.)"""
    from fastkokoro_wyoming.engine.serving.scheduler import IDLE, Priority, Scheduler

    sched = Scheduler(workers=2)
    try:
        started = threading.Event()
        decode = preemptible(model_call(started, 0.3), Options, sched.background_should_yield)
        background = sched.submit(decode, IDLE, admit=False, background=True)
        assert started.wait(5)
        for _ in range(5):  # short requests, one at a time, while it runs
            await sched.submit(lambda: time.sleep(0.01), Priority(time.monotonic()))
        assert await background == "stats"

        gate = threading.Event()
        started.clear()
        background = sched.submit(
            preemptible(model_call(started), Options, sched.background_should_yield),
            IDLE, admit=False, background=True,
        )  # fmt: skip
        assert started.wait(5)
        first = sched.submit(gate.wait, Priority(time.monotonic()))  # the other worker
        later = sched.submit(lambda: "window", Priority(time.monotonic() + 30))
        time.sleep(0.05)
        assert not background.result.done()  # a job due in 30 s waits
        second = sched.submit(lambda: "request", Priority(time.monotonic()))  # due now
        assert await background is PREEMPTED
        assert await second == "request"
        gate.set()
        await first
        assert await later == "window"
    finally:
        sched.close()


async def test_one_request_makes_one_of_two_background_jobs_yield() -> None:
    """Both workers run calibration decodes: a request's job takes one worker at once (no
    wait: nothing but background runs), and only one decode is aborted, not both."""
    from fastkokoro_wyoming.engine.serving.scheduler import IDLE, Priority, Scheduler

    sched = Scheduler(workers=2)
    try:
        starts = [threading.Event(), threading.Event()]
        decodes = [
            sched.submit(
                preemptible(model_call(s, 0.5), Options, sched.background_should_yield),
                IDLE,
                admit=False,
                background=True,
            )  # fmt: skip
            for s in starts
        ]
        assert all(s.wait(5) for s in starts)
        assert await sched.submit(lambda: "request", Priority(time.monotonic())) == "request"
        outcomes = sorted([await d for d in decodes], key=lambda r: r is PREEMPTED)
        assert outcomes == ["stats", PREEMPTED]
    finally:
        sched.close()
