"""The admission rule: bulk requests refused first, with the queue's wait as Retry-After;
interactive ones queued under their own, longer bound, and served ahead of bulk work;
an admitted request promised its first audio, and the lead never breaking that promise.

A fake queue with jobs at set deadlines and a fake clock: milliseconds, no threads
(except the one test on the real scheduler)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from fastkokoro_wyoming.engine.errors import Busy
from fastkokoro_wyoming.engine.model.voices import Voice
from fastkokoro_wyoming.engine.serving.admission import Admission, Urgency, promise_for
from fastkokoro_wyoming.engine.serving.plan import Prepared
from fastkokoro_wyoming.engine.serving.scheduler import Priority, Scheduler
from fastkokoro_wyoming.engine.serving.stream import SpeechStream
from fastkokoro_wyoming.engine.serving.trace import RequestTrace
from fastkokoro_wyoming.engine.settings import EngineConfig, LimitsConfig

LEAD = 10.0
LIMITS = LimitsConfig(
    max_streams=4, interactive_max_wait_s=10.0, bulk_max_wait_s=2.0, interactive_lead_s=LEAD
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class QueueView:
    """What Admission reads of the scheduler. ``jobs``: deadlines of queued jobs in the
    scheduler's terms, relative to the clock's start (interactive ones already moved
    ``LEAD`` earlier, as the engine keys them)."""

    def __init__(self, clock: Clock, jobs: list[float], mean: float, workers: int = 1) -> None:
        self.clock, self.t0 = clock, clock.now
        self.jobs = jobs
        self.mean_job_seconds = mean
        self.workers = workers
        self.busy_workers = 0
        self.busy_seconds = 0.0
        self.interactive_seconds = 0.0

    def jobs_due_by(self, moment: float) -> int:
        return sum(1 for at in self.jobs if self.t0 + at <= moment)


def interactive_jobs(n: int, due_in: float = 0.0) -> list[float]:
    return [due_in - LEAD] * n


def admission(
    jobs: list[float] | None = None,
    *,
    mean: float = 0.5,
    workers: int = 1,
    starting: int = 0,
    first_audio: float = 1.0,
    limits: LimitsConfig = LIMITS,
) -> tuple[Admission, QueueView, Clock]:
    clock = Clock()
    view = QueueView(clock, jobs or [], mean, workers)
    a = Admission(limits, view, lambda interactive: 0 if interactive else starting, clock)  # type: ignore[arg-type]
    a.first_audio_seconds = first_audio
    return a, view, clock


def test_an_idle_server_admits_both_kinds() -> None:
    a, _, _ = admission(mean=0.3)
    assert a.check(0, interactive=False).seconds == 0
    assert a.check(0, interactive=True).seconds == 0


def test_saturated_bulk_is_refused_with_the_predicted_wait_as_retry_after() -> None:
    # 3 interactive jobs late, 9 due within 2 s, 0.5 s each, one worker: a bulk request
    # waits behind all 12 (6 s); an interactive one only behind the 3 late ones
    a, _, _ = admission(interactive_jobs(3, due_in=-1.0) + interactive_jobs(9, due_in=2.0))
    with pytest.raises(Busy) as refused:
        a.check(2, interactive=False)
    assert refused.value.retry_after == 6
    assert "6.0 s" in refused.value.message and "bulk" in refused.value.message
    assert a.check(2, interactive=True).seconds == pytest.approx(1.5)
    assert a.refused == {"interactive": 0, "bulk": 1}


def test_bulk_work_not_yet_due_does_not_count_for_anyone() -> None:
    """Bulk streams ahead of their listeners (due in 5 s, no lead) are passed by both."""
    a, _, _ = admission([5.0] * 20)
    assert a.check(1, interactive=False).seconds == 0
    assert a.check(1, interactive=True).seconds == 0


def test_interactive_is_refused_only_past_its_own_bound() -> None:
    a, _, _ = admission(interactive_jobs(30))  # 15 s even for interactive
    with pytest.raises(Busy) as refused:
        a.check(1, interactive=True)
    assert refused.value.retry_after == 15


def test_requests_still_in_g2p_count_as_work_ahead() -> None:
    """A burst arriving at once sees the requests admitted just before it."""
    a, _, _ = admission(workers=2, starting=3, first_audio=0.6)
    assert a.check(3, interactive=False).seconds == pytest.approx(0.9)  # 3 x 0.6 s / 2
    b, _, _ = admission(workers=2, starting=5, first_audio=0.8)
    with pytest.raises(Busy):  # 5 x 0.8 / 2 > 2 s
        b.check(5, interactive=False)


def test_the_interactive_work_that_will_arrive_counts_for_bulk() -> None:
    """Interactive work arriving while a bulk request waits goes ahead of it: with
    interactive jobs keeping half the worker busy lately, 1 s of queued work takes 2 s."""
    a, view, clock = admission(interactive_jobs(2))
    assert a.check(1, interactive=False).seconds == pytest.approx(1.0)
    for _ in range(30):  # 30 s at half a worker
        clock.now += 1.0
        view.interactive_seconds += 0.5
        a.interactive_load()
    assert a.interactive_load() == pytest.approx(0.5, rel=0.05)
    wait = a.check(1, interactive=False)
    assert wait.seconds == pytest.approx(2.0, rel=0.05)
    assert a.check(1, interactive=True).seconds == pytest.approx(1.0)  # it goes first anyway


def test_a_burst_before_any_rate_is_measured_counts_the_interactive_streams_present() -> None:
    """A cold start: nothing measured yet, but three Home Assistant replies synthesizing,
    each needing 0.3 of a worker in real time: a bulk request's 1 s of queued work takes
    2 / (2 - 0.9) s on two workers; seven such replies (2.1 workers' worth, beyond what
    bulk work may be promised) refuse it at the door."""
    a, _, _ = admission(interactive_jobs(4), workers=2)
    a.cost_per_audio_second = 0.3
    present = {"streams": 3}
    a.interactive_streams = lambda: present["streams"]
    assert a.interactive_load() == pytest.approx(0.9)
    assert a.check(3, interactive=False).seconds == pytest.approx(2.0 / 1.1, rel=0.01)
    present["streams"] = 7
    with pytest.raises(Busy, match="could not be promised"):
        a.check(3, interactive=False)
    assert a.check(3, interactive=True).seconds == pytest.approx(1.0)


def test_the_load_is_a_recent_window_not_the_whole_history() -> None:
    a, view, clock = admission()
    for _ in range(60):  # a busy minute ...
        clock.now += 1.0
        view.interactive_seconds += 0.9
        a.interactive_load()
    for _ in range(40):  # ... then quiet
        clock.now += 1.0
        a.interactive_load()
    assert a.interactive_load() == 0.0


def test_bulk_is_refused_when_interactive_work_alone_fills_the_workers() -> None:
    a, view, clock = admission()
    for _ in range(30):
        clock.now += 1.0
        view.interactive_seconds += 0.95
        a.interactive_load()
    with pytest.raises(Busy, match="could not be promised") as refused:
        a.check(1, interactive=False)
    assert refused.value.retry_after >= 1
    with pytest.raises(Busy, match="max_streams") as refused:  # an infinite wait: 60 s
        a.check(LIMITS.max_streams, interactive=False)
    assert refused.value.retry_after == 60
    a.check(1, interactive=True)  # interactive requests are still queued


def test_bulk_is_refused_when_its_promise_would_cost_interactive_their_bound() -> None:
    """Once due, a bulk request's first jobs go ahead of interactive ones that arrive
    later: if that would push them past their bound, the bulk request is refused."""
    limits = dataclasses.replace(LIMITS, bulk_max_wait_s=10.0, interactive_max_wait_s=5.0)
    a, _, _ = admission(interactive_jobs(9), limits=limits)  # 4.5 s for interactive
    with pytest.raises(Busy, match="interactive requests wait about 5.5 s"):
        a.check(1, interactive=False)
    assert a.check(1, interactive=True).seconds == pytest.approx(4.5)
    b, _, _ = admission(interactive_jobs(7), limits=limits)  # 3.5 + 1 s: kept
    b.check(1, interactive=False)


def test_an_admitted_request_is_promised_its_predicted_first_audio_plus_a_margin() -> None:
    a, _, _ = admission(interactive_jobs(2), first_audio=0.8)
    wait = a.check(1, interactive=False)
    assert wait.seconds == pytest.approx(1.0)
    assert wait.promise == pytest.approx(promise_for(1.8)) == pytest.approx(1.8 * 1.25 + 1)
    a.observe_first_audio(wait.promise - 0.1, wait)
    a.observe_first_audio(wait.promise + 0.1, wait)
    assert a.promised["bulk"] == 2 and a.late["bulk"] == 1
    assert a.promised["interactive"] == a.late["interactive"] == 0


def test_a_bulk_requests_first_jobs_are_due_at_their_predicted_start() -> None:
    """In the interactive jobs' terms: interactive work due before that goes first,
    interactive work arriving after it no longer passes it (the issue's 63 s wait), and
    the promise's margin is left for the first audio itself."""
    a, _, _ = admission(interactive_jobs(2), first_audio=0.8)
    wait = a.check(1, interactive=False)
    urgency = a.urgency(False, wait)
    assert wait.seconds == pytest.approx(1.0) and wait.promise > wait.seconds + 0.8
    assert urgency == Urgency(wait.seconds - LEAD, 0.0, interactive=False)
    assert a.urgency(True, a.check(1, interactive=True)) == Urgency(-LEAD, LEAD, True)


def test_first_audio_cost_is_learned_from_requests_that_ran_alone() -> None:
    a, _, _ = admission(mean=0.1)
    alone = a.check(0, interactive=False)
    assert alone.alone
    for _ in range(20):
        a.observe_first_audio(0.3, alone)
    assert a.first_audio_cost(False) == pytest.approx(0.3, abs=0.01)
    assert a.correction == {True: 1.0, False: 1.0}


def test_first_audio_cost_is_learned_per_kind() -> None:
    """A Home Assistant reply's first audio measured alone says little of a narration's:
    until bulk requests have been measured, they cost the interactive figure or 1 s,
    whichever is more; then each kind its own."""
    a = Admission(LIMITS, QueueView(Clock(), [], 0.1), lambda interactive: 0.0)  # type: ignore[arg-type]
    for _ in range(20):
        a.observe_first_audio(0.3, a.check(0, interactive=True))
    assert a.first_audio_cost(True) == pytest.approx(0.3, abs=0.01)
    assert a.first_audio_cost(False) == 1.0
    for _ in range(20):
        a.observe_first_audio(1.6, a.check(0, interactive=False))
    assert a.first_audio_cost(False) == pytest.approx(1.6, abs=0.01)
    assert a.first_audio_cost(True) == pytest.approx(0.3, abs=0.01)


def test_the_count_is_corrected_by_how_long_admitted_requests_really_waited() -> None:
    """Requests behind others waited twice what the count said (the cores are shared
    with G2P): later predictions double, so Retry-After and the bounds stay honest."""
    a, _, _ = admission(interactive_jobs(4), first_audio=0.5)
    predicted = a.check(1, interactive=False)
    assert predicted.seconds == pytest.approx(2.0)
    for _ in range(30):
        a.observe_first_audio(2 * (2.0 + 0.5), predicted)
    assert a.correction[False] == pytest.approx(2.0, rel=0.02)
    assert a.correction[True] == 1.0  # learned per kind
    with pytest.raises(Busy) as refused:
        a.check(1, interactive=False)  # 4 s now: over the 2 s bulk bound
    assert refused.value.retry_after == 4


def test_max_streams_refuses_both_kinds() -> None:
    a, _, _ = admission(mean=0.1)
    for interactive in (False, True):
        with pytest.raises(Busy, match="max_streams"):
            a.check(LIMITS.max_streams, interactive=interactive)


def test_retry_after_is_at_least_one_second_and_at_most_a_minute() -> None:
    a, _, _ = admission(interactive_jobs(10_000), mean=1.0)
    with pytest.raises(Busy) as refused:
        a.check(1, interactive=False)
    assert refused.value.retry_after == 60


async def test_scheduler_counts_jobs_due_and_serves_the_interactive_lead_first() -> None:
    """Under earliest-deadline-first, an interactive job (due lead seconds early) passes
    bulk jobs less late than the lead; jobs_due_by sees exactly the late ones."""
    s = Scheduler(workers=1, max_queue=10)
    gate = threading.Event()
    blocker = s.submit(gate.wait, Priority(0.0))
    await asyncio.sleep(0.05)
    now = time.monotonic()
    order: list[str] = []
    late_bulk = s.submit(lambda: order.append("bulk 1 s late"), Priority(now - 1.0, 1.0))
    future_bulk = s.submit(lambda: order.append("bulk due in 5 s"), Priority(now + 5.0, 2.0))
    interactive = s.submit(lambda: order.append("interactive"), Priority(now - 2.0, 3.0))
    assert s.jobs_due_by(now) == 2
    assert s.jobs_due_by(now - 1.5) == 1
    gate.set()
    await asyncio.gather(blocker.result, late_bulk.result, future_bulk.result, interactive.result)
    assert order == ["interactive", "bulk 1 s late", "bulk due in 5 s"]
    assert s.mean_job_seconds > 0
    s.close()


def test_the_rest_of_an_admitted_reply_is_never_refused() -> None:
    a, _, _ = admission(interactive_jobs(1000) + [0.0] * 1000, mean=1.0)
    for interactive in (False, True):
        assert a.check(99, interactive, admitted=True).seconds > 60
    assert a.refused == {"interactive": 0, "bulk": 0}


def test_bulk_waits_while_running_streams_need_the_real_time_capacity() -> None:
    """A stream's claim is its real-time need: with the model making 4 s of audio per
    second of work (one worker), 4 streams fill it; at share 2, 8 running streams
    refuse a ninth bulk request whatever the queue says, and never an interactive one."""
    a, view, _ = admission(mean=0.1)
    a.note_audio(40.0)  # 40 s of audio for 10 s of model time
    view.busy_seconds = 10.0
    assert a.realtime_capacity() == pytest.approx(1 / (0.5 * 0.5 + 0.5 * 0.25))
    for _ in range(10):  # the measurement settles on 0.25 s of work per audio second
        a.note_audio(40.0)
        view.busy_seconds += 10.0
        a.realtime_capacity()
    assert a.realtime_capacity() == pytest.approx(4.0, rel=0.01)
    a.limits = dataclasses.replace(LIMITS, max_streams=32, bulk_realtime_share=2.0)
    a.check(7, interactive=False)
    with pytest.raises(Busy, match="real time") as refused:
        a.check(8, interactive=False)
    assert refused.value.retry_after >= 2
    a.check(8, interactive=True)


def test_a_request_admitted_alone_but_joined_by_others_measures_nothing() -> None:
    a, _, _ = admission(mean=0.1, first_audio=0.4)
    alone = dataclasses.replace(a.check(0, interactive=False), alone=True)
    a.observe_first_audio(16.0, alone, joined=True)  # passed by later interactive ones
    assert a.first_audio_seconds == 0.4


def deadlines_of(urgency: Urgency) -> tuple[SpeechStream, Callable[[float], Priority]]:
    """A stream's deadline function (what it gives each job) without running it."""
    prep = Prepared(("x",), Voice("af_test", "a", np.zeros((510, 256), np.float32)), "a", 1.0, True)
    stream = SpeechStream(
        prep,
        iter(()),
        lambda *a: None,
        EngineConfig(),
        0,
        RequestTrace(None),
        urgency,  # type: ignore[arg-type, return-value]
    )
    return stream, stream._due_for(None)


def test_every_job_before_the_first_chunk_is_due_by_the_promise() -> None:
    """A first window of held-back silence yields nothing: the jobs after it still carry
    the first audio's deadline until a chunk is out; then they fall back to playback
    time (bulk: no lead), and the deadline only ever moves later (the heap's rule)."""
    stream, due = deadlines_of(Urgency(first_due=5.0 - LEAD))  # promised: start by +5 s
    first, second = due(0.0), due(0.5)
    assert first.deadline() == pytest.approx(stream.t0 + 5.0 - LEAD)
    assert second.deadline() == pytest.approx(stream.t0 + 5.0 - LEAD + 0.5)
    before = second.deadline()
    stream._started()
    assert second.deadline() == pytest.approx(stream.playback_start + 0.5)
    assert second.deadline() > before
    assert first.deadline() == pytest.approx(stream.t0 + 5.0 - LEAD)  # fixed


def test_an_interactive_streams_jobs_keep_their_lead_before_and_after_the_first_chunk() -> None:
    stream, due = deadlines_of(Urgency(-LEAD, LEAD, interactive=True))
    window = due(1.0)
    assert window.interactive and window.deadline() == pytest.approx(stream.t0 - LEAD + 1.0)
    stream._started()
    assert window.deadline() == pytest.approx(stream.playback_start - LEAD + 1.0)
