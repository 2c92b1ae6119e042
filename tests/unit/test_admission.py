"""The admission rule: bulk requests refused first, with the queue's wait as Retry-After;
interactive ones queued under their own, longer bound, and served ahead of bulk work."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

from fastkokoro_wyoming.engine.errors import Busy
from fastkokoro_wyoming.engine.serving.admission import Admission
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from fastkokoro_wyoming.engine.settings import LimitsConfig

LIMITS = LimitsConfig(
    max_streams=4, interactive_max_wait_s=10.0, bulk_max_wait_s=2.0, interactive_lead_s=2.0
)


class QueueView:
    """What Admission reads of the scheduler, set by the test."""

    def __init__(self, due: dict[float, int], mean: float, workers: int = 1) -> None:
        self.due = due  # lead -> jobs due by now - lead
        self.mean_job_seconds = mean
        self.workers = workers
        self.busy_workers = 0

    def jobs_due_by(self, moment: float) -> int:
        lead = round(time.monotonic() - moment)
        return self.due.get(lead, 0)


def admission(view: QueueView, starting: int = 0, first_audio: float = 1.0) -> Admission:
    a = Admission(LIMITS, view, lambda: starting)  # type: ignore[arg-type]
    a.first_audio_seconds = first_audio
    return a


def test_an_idle_server_admits_both_kinds() -> None:
    a = admission(QueueView({}, mean=0.3))
    assert a.check(0, interactive=False).seconds == 0
    assert a.check(0, interactive=True).seconds == 0


def test_saturated_bulk_is_refused_with_the_predicted_wait_as_retry_after() -> None:
    # 12 jobs already due, 0.5 s each, one worker: a bulk request would wait 6 s
    a = admission(QueueView({0: 12, 2: 3}, mean=0.5))
    with pytest.raises(Busy) as refused:
        a.check(2, interactive=False)
    assert refused.value.retry_after == 6
    assert "6.0 s" in refused.value.message and "bulk" in refused.value.message
    # the interactive one counts only jobs more than its lead late: 3 x 0.5 s = 1.5 s
    assert a.check(2, interactive=True).seconds == pytest.approx(1.5)
    assert a.refused == {"interactive": 0, "bulk": 1}


def test_interactive_is_refused_only_past_its_own_bound() -> None:
    a = admission(QueueView({0: 40, 2: 30}, mean=0.5))  # 15 s even for interactive
    with pytest.raises(Busy) as refused:
        a.check(1, interactive=True)
    assert refused.value.retry_after == 15


def test_requests_still_in_g2p_count_as_work_ahead() -> None:
    """A burst arriving at once sees the requests admitted just before it."""
    a = admission(QueueView({}, mean=0.5, workers=2), starting=3, first_audio=0.6)
    # 3 requests x 0.6 s to first audio / 2 workers
    assert a.check(3, interactive=False).seconds == pytest.approx(0.9)
    with pytest.raises(Busy):  # 5 x 0.6 / 2 > 2 s
        admission(QueueView({}, mean=0.5, workers=2), starting=5, first_audio=0.8).check(
            5, interactive=False
        )


def test_first_audio_cost_is_learned_from_requests_that_ran_alone() -> None:
    a = admission(QueueView({}, mean=0.1))
    alone = a.check(0, interactive=False)
    assert alone.alone
    for _ in range(20):
        a.observe_first_audio(0.3, alone)
    assert a.first_audio_seconds == pytest.approx(0.3, abs=0.01)
    assert a.correction == {True: 1.0, False: 1.0}


def test_the_count_is_corrected_by_how_long_admitted_requests_really_waited() -> None:
    """Requests behind others waited twice what the count said (the cores are shared
    with G2P): later predictions double, so Retry-After and the bounds stay honest."""
    view = QueueView({0: 4}, mean=0.5)
    a = admission(view, first_audio=0.5)
    predicted = a.check(1, interactive=False)
    assert predicted.seconds == pytest.approx(2.0)
    for _ in range(30):
        a.observe_first_audio(2 * (2.0 + 0.5), predicted)
    assert a.correction[False] == pytest.approx(2.0, rel=0.02)
    assert a.correction[True] == 1.0  # learned per kind: bulk is passed by interactive
    with pytest.raises(Busy) as refused:
        a.check(1, interactive=False)  # 4 s now: over the 2 s bulk bound
    assert refused.value.retry_after == 4


def test_max_streams_refuses_both_kinds() -> None:
    a = admission(QueueView({}, mean=0.1))
    for interactive in (False, True):
        with pytest.raises(Busy, match="max_streams"):
            a.check(LIMITS.max_streams, interactive=interactive)


def test_retry_after_is_at_least_one_second_and_at_most_a_minute() -> None:
    with pytest.raises(Busy) as refused:
        admission(QueueView({0: 10_000}, mean=1.0)).check(1, interactive=False)
    assert refused.value.retry_after == 60


async def test_scheduler_counts_jobs_due_and_serves_the_interactive_lead_first() -> None:
    """Under earliest-deadline-first, an interactive job (due lead seconds early) passes
    bulk jobs less late than the lead; jobs_due_by sees exactly the late ones."""
    s = Scheduler(workers=1, max_queue=10)
    gate = threading.Event()
    blocker = s.submit(gate.wait, (0.0, 0.0))
    await asyncio.sleep(0.05)
    now = time.monotonic()
    order: list[str] = []
    late_bulk = s.submit(lambda: order.append("bulk 1 s late"), (now - 1.0, 1.0))
    future_bulk = s.submit(lambda: order.append("bulk due in 5 s"), (now + 5.0, 2.0))
    interactive = s.submit(lambda: order.append("interactive"), (now - 2.0, 3.0))
    assert s.jobs_due_by(now) == 2
    assert s.jobs_due_by(now - 1.5) == 1
    gate.set()
    await asyncio.gather(blocker.result, late_bulk.result, future_bulk.result, interactive.result)
    assert order == ["interactive", "bulk 1 s late", "bulk due in 5 s"]
    assert s.mean_job_seconds > 0
    s.close()


def test_the_rest_of_an_admitted_reply_is_never_refused() -> None:
    a = admission(QueueView({0: 1000, 2: 1000}, mean=1.0))
    for interactive in (False, True):
        assert a.check(99, interactive, admitted=True).seconds > 60
    assert a.refused == {"interactive": 0, "bulk": 0}


def test_bulk_waits_while_running_streams_need_the_real_time_capacity() -> None:
    """A stream's claim is its real-time need: with the model making 4 s of audio per
    second of work (one worker), 4 streams fill it; at share 2, 8 running streams
    refuse a ninth bulk request whatever the queue says, and never an interactive one."""
    view = QueueView({}, mean=0.1)
    view.busy_seconds = 0.0
    a = admission(view)
    a.note_audio(40.0)  # 40 s of audio for 10 s of model time
    view.busy_seconds = 10.0
    assert a.realtime_capacity() == pytest.approx(1 / (0.5 * 0.5 + 0.5 * 0.25))
    for _ in range(10):  # the measurement settles on 0.25 s of work per audio second
        a.note_audio(40.0)
        view.busy_seconds += 10.0
        a.realtime_capacity()
    assert a.realtime_capacity() == pytest.approx(4.0, rel=0.01)
    limits = dataclasses.replace(LIMITS, max_streams=32, bulk_realtime_share=2.0)
    a.limits = limits
    a.check(7, interactive=False)
    with pytest.raises(Busy, match="real time") as refused:
        a.check(8, interactive=False)
    assert refused.value.retry_after >= 2
    a.check(8, interactive=True)


def test_a_request_admitted_alone_but_joined_by_others_measures_nothing() -> None:
    a = admission(QueueView({}, mean=0.1), first_audio=0.4)
    alone = dataclasses.replace(a.check(0, interactive=False), alone=True)
    a.observe_first_audio(16.0, alone, joined=True)  # passed by later interactive ones
    assert a.first_audio_seconds == 0.4
