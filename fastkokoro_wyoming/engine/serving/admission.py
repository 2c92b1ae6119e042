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

An admitted request is *promised* its first audio within the wait it was admitted on,
plus a margin (:func:`promise_for`: a quarter more, plus a second). The lead may not
break that promise: a bulk request's first jobs are due, in the interactive jobs' terms,
at the moment they must start to keep it (:meth:`Admission.urgency`), so interactive
work that arrives later than that no longer passes them. For the promise to be honest
under a steady Home Assistant load, a bulk request's wait counts the interactive work
that will arrive while it waits (the interactive model time per second measured over
the last :data:`LOAD_WINDOW_S`), not only what is queued. And a bulk request is refused
at the door when keeping its promise would push a new interactive request past its
bound, or when interactive work alone keeps the workers busy.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import Busy
from ..settings import LimitsConfig
from .scheduler import Scheduler

_LOGGER = logging.getLogger(__name__)

LOAD_WINDOW_S = 30.0  # the interactive load is measured over this much recent time
MIN_LOAD_SPAN_S = 5.0  # ... and over at least this long (a quiet start is not a rate)
MAX_INTERACTIVE_SHARE = 0.9  # of the workers: beyond it bulk work could not be promised
PROMISE_SHARE, PROMISE_SECONDS = 0.25, 1.0  # the margin on the predicted first audio


def promise_for(first_audio_s: float) -> float:
    """The first audio a request admitted on ``first_audio_s`` is promised (seconds
    after arrival): a quarter more, plus a second, for what the prediction cannot see
    (G2P sharing the cores, the job in the worker finishing late, arrivals above the
    measured rate)."""
    return first_audio_s * (1 + PROMISE_SHARE) + PROMISE_SECONDS


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
    # the first audio it is promised, seconds after arrival (promise_for): set by check()
    promise: float = math.inf
    interactive_load: float = 0.0  # interactive model seconds per second, lately


@dataclass(frozen=True)
class Urgency:
    """How a request's jobs are keyed in the scheduler (its ``Priority``): its first
    audio's jobs are due ``first_due`` seconds after its arrival (negative: before),
    later ones ``lead`` seconds before its listener needs them."""

    first_due: float = 0.0
    lead: float = 0.0
    interactive: bool = False


class Admission:
    """The admission rule (``engine.limits``), applied by :meth:`Engine.synthesize`.

    ``starting(interactive)`` counts admitted requests of that kind without their first
    audio yet: a burst arriving at once must see the requests just ahead of it (their
    text is still in G2P, their jobs not queued), or every one of them would find an
    empty queue. Each costs what a first audio of its kind costs on this machine when
    nothing else runs (G2P, the plan and the first window), measured per kind on such
    requests: a Home Assistant reply's first sentence is short, an HTTP narration's
    first segment and its G2P are not (a burst's bulk requests were served 2-3x later
    than a shared figure promised). Until a kind has been measured, the other's figure,
    but at least 1 s.
    """

    def __init__(
        self,
        limits: LimitsConfig,
        scheduler: Scheduler | None,
        starting: Callable[[bool], float],
        clock: Callable[[], float] = time.monotonic,  # the scheduler's deadlines' clock
        interactive_streams: Callable[[], int] = lambda: 0,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.scheduler = scheduler
        self.starting = starting
        self.interactive_streams = interactive_streams  # interactive requests synthesizing
        self.first_audio = {True: 1.0, False: 1.0}  # by ``interactive``; prior: a small CPU
        self._measured = {True: False, False: False}
        # observed / predicted wait of requests admitted behind others, per kind: what
        # the count misses (G2P and the model sharing the cores)
        self.correction = {True: 1.0, False: 1.0}  # by ``interactive``
        self.refused = {"interactive": 0, "bulk": 0}
        # admitted requests' first audio, by kind: how many, and how many came later
        # than promised (/metrics; the stress bench reads them)
        self.promised = {"interactive": 0, "bulk": 0}
        self.late = {"interactive": 0, "bulk": 0}
        # model time per second of audio made (measured over the last few seconds of
        # audio): how many real-time streams the workers can feed
        self.cost_per_audio_second = 0.5  # prior: a 2-core CPU
        self.audio_seconds = 0.0
        self._mark = (0.0, 0.0)  # (busy_seconds, audio_seconds) at the last measurement
        self._load: deque[tuple[float, float]] = deque()  # (time, interactive_seconds)

    @property
    def first_audio_seconds(self) -> float:
        """The first audio's cost alone, the larger of the two kinds'."""
        return max(self.first_audio_cost(True), self.first_audio_cost(False))

    @first_audio_seconds.setter
    def first_audio_seconds(self, seconds: float) -> None:
        self.first_audio = {True: seconds, False: seconds}
        self._measured = {True: True, False: True}

    def first_audio_cost(self, interactive: bool) -> float:
        """What a first audio of this kind costs alone (see the class docstring)."""
        if self._measured[interactive]:
            return self.first_audio[interactive]
        other = not interactive
        return max(1.0, self.first_audio[other]) if self._measured[other] else 1.0

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

    def interactive_load(self) -> float:
        """Interactive model time per second (workers' worth): the interactive work that
        arrives while a bulk request waits, and goes ahead of it. The rate measured over
        the last :data:`LOAD_WINDOW_S`, or, when more, the real-time need of the
        interactive streams synthesizing now (each the model time a second of audio
        costs, up to a worker): a burst on a server that has measured no rate yet (a
        cold start, or Home Assistant users who all ask at once) is seen as it happens,
        not 30 s later, so bulk requests in it are not promised a wait that the
        interactive requests arriving behind them will take."""
        present = self.interactive_streams() * min(1.0, self.cost_per_audio_second)
        return max(present, self._measured_interactive_load())

    def _measured_interactive_load(self) -> float:
        sched = self.scheduler
        if sched is None:
            return 0.0
        now, total = self.clock(), sched.interactive_seconds
        load = self._load
        if not load or now - load[-1][0] >= 1.0:
            load.append((now, total))
        while len(load) > 2 and now - load[1][0] >= LOAD_WINDOW_S:
            load.popleft()  # the oldest kept is the last one before the window
        since, base = load[0]
        return max(0.0, total - base) / max(now - since, MIN_LOAD_SPAN_S)

    def observe_first_audio(
        self, seconds: float, predicted: WaitEstimate, *, joined: bool = False
    ) -> None:
        """A request admitted with ``predicted`` got its first audio after ``seconds``:
        alone, that is what a first audio costs; behind others, how far off the count
        was (the prediction included its own first audio's cost, as it waits for it).
        ``joined``: other requests arrived before that first audio; a request admitted
        alone then measures nothing (they may have passed it)."""
        kind = "interactive" if predicted.interactive else "bulk"
        self.promised[kind] += 1
        if seconds > predicted.promise:
            self.late[kind] += 1
            _LOGGER.info(
                "A %s request's first audio came after %.2f s; it was promised %.2f s "
                "(predicted wait %.2f s: %d jobs due, %.1f requests starting, %.2f s a job, "
                "interactive load %.2f)",
                kind, seconds, predicted.promise, predicted.seconds, predicted.jobs_due,
                predicted.starting, predicted.mean_job_seconds, predicted.interactive_load,
            )  # fmt: skip
        kind_ = predicted.interactive
        if predicted.alone:
            if not joined:
                first = self.first_audio_cost(kind_)
                self.first_audio[kind_] = 0.7 * first + 0.3 * seconds
                self._measured[kind_] = True
            return
        expected = predicted.counted + self.first_audio_cost(kind_)
        if expected >= 0.5:  # too short to say anything about the count
            ratio = min(4.0, max(0.5, seconds / expected))
            self.correction[kind_] = 0.8 * self.correction[kind_] + 0.2 * ratio

    def urgency(self, interactive: bool, wait: WaitEstimate) -> Urgency:
        """How the jobs of a request admitted with ``wait`` are keyed. Interactive: due
        ``interactive_lead_s`` early. Bulk: later jobs at their playback time, the first
        audio's at the start predicted for it, counted as interactive deadlines are, so
        only interactive work due before that goes ahead of them. Not the latest start
        that would still keep the promise: interactive work arriving in a burst took all
        of that slack, and then the first audio, slower than alone with the burst in G2P,
        came 3-55 % late; the promise's margin is kept for what the count cannot see."""
        lead = self.limits.interactive_lead_s
        if interactive:
            return Urgency(-lead, lead, interactive=True)
        start_by = wait.seconds
        if not math.isfinite(start_by):
            return Urgency()
        return Urgency(max(0.0, start_by) - lead)

    def estimate(self, interactive: bool) -> WaitEstimate:
        """The wait a request arriving now would see before its first model call runs.

        Interactive: the jobs already due, in the interactive jobs' terms (the lead
        counted). Bulk: the jobs due before its first jobs would be (a second pass with
        the horizon of the first) and the interactive work arriving meanwhile: the work
        ahead over the workers' time that interactive work leaves free."""
        sched = self.scheduler
        if sched is None:  # an engine wired without a model (catalog-only tests)
            return WaitEstimate(0.0, 0, 0.0, 0.0)
        now, lead = self.clock(), self.limits.interactive_lead_s
        mean, workers = sched.mean_job_seconds, sched.workers
        starting = {kind: self.starting(kind) for kind in (True, False)}
        start_cost = sum(n * self.first_audio_cost(kind) for kind, n in starting.items())

        def ahead(moment: float) -> tuple[int, float]:
            due = sched.jobs_due_by(moment)
            return due, (due + sched.busy_workers / 2) * mean + start_cost

        due, busy = ahead(now - lead)
        load = 0.0
        if interactive:
            counted = busy / workers
        else:
            load = self.interactive_load()
            free = workers - load
            if free <= workers * (1 - MAX_INTERACTIVE_SHARE):
                counted = math.inf
            else:
                counted = busy / free
                horizon = promise_for(counted + self.first_audio_cost(False))
                due, busy = ahead(now - lead + horizon)
                counted = busy / free
        correction = self.correction[interactive]
        return WaitEstimate(
            counted * correction, due, sum(starting.values()), mean, counted, interactive,
            interactive_load=load,
        )  # fmt: skip

    def check(
        self, active_streams: int, interactive: bool, *, admitted: bool = False
    ) -> WaitEstimate:
        """Raise :class:`Busy` (with ``retry_after``) if the request must be refused;
        ``admitted``: the rest of a reply already admitted, never refused. The estimate
        returned carries the promise made to the request (:func:`promise_for`)."""
        limits = self.limits
        kind = "interactive" if interactive else "bulk"
        wait = self.estimate(interactive)
        if active_streams == 0 and wait.counted == 0.0:
            wait = dataclasses.replace(wait, alone=True)
        wait = dataclasses.replace(
            wait, promise=promise_for(wait.seconds + self.first_audio_cost(interactive))
        )
        if admitted:
            return wait
        if active_streams >= limits.max_streams:
            self.refused[kind] += 1
            raise _busy(
                f"{active_streams} requests are synthesizing; the limit is "
                f"{limits.max_streams} (engine.limits.max_streams)",
                wait.seconds,
            )
        if not interactive and not math.isfinite(wait.seconds):
            self.refused[kind] += 1
            raise _busy(
                f"the server is saturated: interactive requests keep about "
                f"{wait.interactive_load:.1f} of {self._workers()} workers busy, so a new "
                "bulk request could not be promised its first audio",
                10.0,
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
        if not interactive:
            # once due, its first jobs go ahead of interactive ones that arrive later
            cost = self.first_audio_cost(False) / self._workers()
            behind = self.estimate(True).seconds + cost
            if behind > limits.interactive_max_wait_s:
                self.refused[kind] += 1
                raise _busy(
                    f"the server is saturated: keeping a new bulk request's promise would "
                    f"make interactive requests wait about {behind:.1f} s (their bound is "
                    f"{limits.interactive_max_wait_s:g} s)",
                    max(wait.seconds, behind - limits.interactive_max_wait_s),
                )
        return wait

    def _workers(self) -> int:
        return self.scheduler.workers if self.scheduler is not None else 1


def _busy(message: str, wait_s: float) -> Busy:
    """Busy with a Retry-After from the queue: when the work ahead should be done."""
    err = Busy(message)
    err.retry_after = max(1, min(60, math.ceil(wait_s))) if math.isfinite(wait_s) else 60
    return err
