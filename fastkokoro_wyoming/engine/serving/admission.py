"""Which new requests start now: by the wait they would see, and by who is asking.

Two kinds of client share the workers. Interactive ones (Home Assistant over Wyoming)
send a sentence or two, wait for the first audio with a person listening, and never
retry: refusing one means the user hears nothing. Bulk ones (the HTTP API: narration,
scripts, Open WebUI) can be told to come back, and the OpenAI SDK honours
``Retry-After``. So when the machine is saturated, bulk requests are refused first,
with the wait the queue predicts; interactive ones are queued, ahead of bulk work, as
long as their predicted wait stays under their own bound.

The prediction follows the earliest-deadline-first scheduler: a new request's first job
is due now, so it waits only behind jobs already due (streams that fell behind real
time, and other requests' first jobs), not behind streams that are ahead of their
listeners. A stream's claim on the workers is thus its real-time need, not a slot.
Interactive jobs are treated as due ``interactive_lead_s`` earlier, so they also pass
bulk work that is less late than that.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Busy
from ..settings import LimitsConfig
from .scheduler import Scheduler


@dataclass(frozen=True)
class WaitEstimate:
    """Seconds a new request would wait for its first model call, and from what."""

    seconds: float  # the queue's count, times the correction learned from outcomes
    jobs_due: int  # queued jobs that go first under earliest-deadline-first
    starting: float  # admitted requests without their first audio yet (engine's count)
    mean_job_seconds: float
    counted: float = 0.0  # seconds before the correction
    interactive: bool = False
    # no other request in the engine: its first audio measures what one costs (one
    # that merely found the queue empty may still share the cores with playing streams)
    alone: bool = False


class Admission:
    """The admission rule (``engine.limits``), applied by :meth:`Engine.synthesize`.

    ``starting`` counts admitted requests without their first audio yet: a burst
    arriving at once must see the requests just ahead of it (their text is still in
    G2P, their jobs not queued), or every one of them would find an empty queue. Each
    costs what a request's first audio costs on this machine when nothing else runs
    (G2P, the plan and the first window): measured on such requests, 1 s until then.
    """

    def __init__(
        self,
        limits: LimitsConfig,
        scheduler: Scheduler | None,
        starting: Callable[[], float],
    ) -> None:
        self.limits = limits
        self.scheduler = scheduler
        self.starting = starting
        self.first_audio_seconds = 1.0  # prior: a small CPU; measured from then on
        # observed / predicted wait of requests admitted behind others, per kind: what
        # the count misses (G2P and the model sharing the cores; for bulk, the
        # interactive requests that arrive later and pass it)
        self.correction = {True: 1.0, False: 1.0}  # by ``interactive``
        self.refused = {"interactive": 0, "bulk": 0}
        # model time per second of audio made (measured over the last few seconds of
        # audio): how many real-time streams the workers can feed
        self.cost_per_audio_second = 0.5  # prior: a 2-core CPU
        self.audio_seconds = 0.0
        self._mark = (0.0, 0.0)  # (busy_seconds, audio_seconds) at the last measurement

    def note_audio(self, seconds: float) -> None:
        """A request yielded ``seconds`` of audio (the engine calls this per chunk)."""
        self.audio_seconds += seconds

    def realtime_capacity(self) -> float:
        """Streams the workers can keep in real time, from the measured model time per
        second of audio (re-measured each time 10 s more audio has been made)."""
        sched = self.scheduler
        if sched is None:
            return math.inf
        busy0, audio0 = self._mark
        made = self.audio_seconds - audio0
        if made >= 10.0:
            cost = max(1e-3, (sched.busy_seconds - busy0) / made)
            self.cost_per_audio_second = 0.5 * self.cost_per_audio_second + 0.5 * cost
            self._mark = (sched.busy_seconds, self.audio_seconds)
        return sched.workers / self.cost_per_audio_second

    def observe_first_audio(
        self, seconds: float, predicted: WaitEstimate, *, joined: bool = False
    ) -> None:
        """A request admitted with ``predicted`` got its first audio after ``seconds``:
        alone, that is what a first audio costs; behind others, how far off the count
        was (the prediction included its own first audio's cost, as it waits for it).
        ``joined``: other requests arrived before that first audio; a request admitted
        alone then measures nothing (they may have passed it)."""
        if predicted.alone:
            if not joined:
                self.first_audio_seconds = 0.7 * self.first_audio_seconds + 0.3 * seconds
            return
        expected = predicted.counted + self.first_audio_seconds
        if expected >= 0.5:  # too short to say anything about the count
            ratio = min(4.0, max(0.5, seconds / expected))
            kind = predicted.interactive
            self.correction[kind] = 0.8 * self.correction[kind] + 0.2 * ratio

    def lead(self, interactive: bool) -> float:
        """How much earlier than its playback deadline a request's jobs are due."""
        return self.limits.interactive_lead_s if interactive else 0.0

    def estimate(self, interactive: bool) -> WaitEstimate:
        """The wait a request arriving now would see before its first model call runs."""
        sched = self.scheduler
        if sched is None:  # an engine wired without a model (catalog-only tests)
            return WaitEstimate(0.0, 0, 0.0, 0.0)
        mean = sched.mean_job_seconds
        due = sched.jobs_due_by(time.monotonic() - self.lead(interactive))
        starting = self.starting()
        busy = (due + sched.busy_workers / 2) * mean + starting * self.first_audio_seconds
        counted = busy / sched.workers
        correction = self.correction[interactive]
        return WaitEstimate(counted * correction, due, starting, mean, counted, interactive)

    def check(
        self, active_streams: int, interactive: bool, *, admitted: bool = False
    ) -> WaitEstimate:
        """Raise :class:`Busy` (with ``retry_after``) if the request must be refused;
        ``admitted``: the rest of a reply already admitted, never refused."""
        limits = self.limits
        kind = "interactive" if interactive else "bulk"
        wait = self.estimate(interactive)
        if active_streams == 0 and wait.counted == 0.0:
            wait = dataclasses.replace(wait, alone=True)
        if admitted:
            return wait
        if active_streams >= limits.max_streams:
            self.refused[kind] += 1
            raise _busy(
                f"{active_streams} requests are synthesizing; the limit is "
                f"{limits.max_streams} (engine.limits.max_streams)",
                wait.seconds,
            )
        capacity = self.realtime_capacity() * limits.bulk_realtime_share
        if not interactive and active_streams >= max(1.0, capacity):
            self.refused[kind] += 1
            raise _busy(
                f"the server is saturated: {active_streams} streams already need what the "
                f"model can make in real time here (about {capacity:.1f} streams at "
                f"engine.limits.bulk_realtime_share {limits.bulk_realtime_share:g})",
                max(wait.seconds, 2.0),
            )
        bound = limits.interactive_max_wait_s if interactive else limits.bulk_max_wait_s
        if wait.seconds > bound:
            self.refused[kind] += 1
            raise _busy(
                f"the server is saturated: a new {kind} request would wait about "
                f"{wait.seconds:.1f} s for its first audio (the bound is {bound:g} s)",
                wait.seconds,
            )
        return wait


def _busy(message: str, wait_s: float) -> Busy:
    """Busy with a Retry-After from the queue: when the work ahead should be done."""
    err = Busy(message)
    err.retry_after = max(1, min(60, math.ceil(wait_s)))
    return err
