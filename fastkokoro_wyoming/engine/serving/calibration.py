"""What the engine holds for windowed decoding: the split model and each voice's priors.

The split graphs are derived once per model file and cached (graphs.py). A voice needs
its norm priors (norm_stats.py) before its segments can be windowed. Everything that is
not already in the cache is prepared *while the engine serves*: the builder returns as
soon as the whole model can speak, the graphs are derived in a low-priority thread, the
decoder's sessions are opened in one background job, and each voice (the default and
``engine.decoder.calibrate_voices`` first, any other the first time it is asked for) is
calibrated quickly (6 decodes), one short decode per scheduler job at the lowest priority
(one per worker after a quiet moment), each job aborted when a request's job would
otherwise wait for a worker (background.py, Scheduler.background_should_yield); the
default voice's quick priors are then refined by the full plan (15 decodes), after any
new voice's. Until a voice's priors are ready its segments are decoded whole; a segment
is never switched midway (the choice is made when its render starts). A blend takes the
weighted mix of its voices' priors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..model.voices import Voice, parse_blend
from ..model.windowed.decoder import WindowedDecoder
from ..model.windowed.graphs import WindowedGraphs
from ..model.windowed.norm_stats import (
    DEFAULT_ANCHORS,
    DEFAULT_TEXTS,
    QUICK_ANCHORS,
    QUICK_TEXTS,
    NormPriors,
    calibration_ids,
    priors_path,
)
from .background import PREEMPTED, Progress, in_low_priority_thread, preemptible
from .calibration_plan import Calibration, Plan, decode_stats
from .scheduler import IDLE, Scheduler

_LOGGER = logging.getLogger(__name__)
MAX_BLENDS = 64
DERIVE_SECONDS = 38.0  # graph derivation (24 s) and the int8 rewrite (14 s) on 2 vCPUs
STEP_SECONDS = 1.0  # typical calibration decode, until one has been measured
QUIET_SECONDS = 1.5  # without a request for this long, calibration decodes use every worker


@dataclass(frozen=True)
class DecoderSource:
    """How to get the decoder when it is not open at build time: ``derive`` (a thread) gives
    the graphs, ``open`` their sessions (one job); ``what``: for the log and ``/health``."""

    derive: Callable[[], WindowedGraphs]
    open: Callable[[WindowedGraphs], WindowedDecoder]
    what: str = "Deriving the windowed decoder's graphs"
    once: str = "model file"
    seconds: float = DERIVE_SECONDS


class WindowedBackend:
    """The windowed decoder and a per-voice table of norm priors; thread-safe."""

    def __init__(
        self,
        decoder: WindowedDecoder | None,
        scheduler: Scheduler,
        voice_table: Callable[[str], tuple[np.ndarray, str]],
        *,
        source: DecoderSource | None = None,
        first_voices: Sequence[str] = (),
        loop: asyncio.AbstractEventLoop | None = None,
        anchors: Sequence[int] = DEFAULT_ANCHORS,
        text_count: int = DEFAULT_TEXTS,
    ) -> None:
        """``decoder`` open already, or None and ``source`` to prepare it in the background;
        ``first_voices`` are calibrated first; ``loop``: where background work is driven
        from (else the loop of the first request that asks for priors)."""
        self.scheduler = scheduler
        self.progress = Progress()
        self.anchors = tuple(anchors)
        self.text_count = text_count
        self._reference = first_voices[0] if first_voices else None  # refined: full plan
        self._decoder = decoder
        self._source = source
        self._voice_table = voice_table  # name -> (style table, language code)
        self._priors: dict[str, NormPriors] = {}
        self._blends: dict[str, NormPriors] = {}
        self._calibrating: set[str] = set()
        self._wanted: dict[str, None] = dict.fromkeys(first_voices)  # before the decoder
        self._quick: set[str] = set()  # voices whose priors come from the quick plan
        self._active: list[Calibration] = []  # calibrations under way: refinements last
        self._lock = threading.Lock()
        self._on_open: list[Callable[[WindowedDecoder], None]] = []  # when_open's, waiting
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._closed = False
        self.disabled: str | None = None  # why windowed decoding is off, if it turned out so
        if loop is not None:
            loop.call_soon_threadsafe(self._start, loop)

    @property
    def decoder(self) -> WindowedDecoder | None:
        """The split model's sessions; None while they are being prepared."""
        return self._decoder

    def when_open(self, then: Callable[[WindowedDecoder], None]) -> None:
        """``then(decoder)`` on the loop once the decoder is open (now, if it is)."""
        if self._decoder is not None:
            then(self._decoder)
        else:
            self._on_open.append(then)

    def replace_decoder(self, old: WindowedDecoder, new: WindowedDecoder) -> None:
        """On the loop: ``new`` (the same graphs on another backend: OpenVINO) serves the
        segments that start from now on; nothing if closed or replaced meanwhile."""
        if self._decoder is old and not self._closed:
            self._decoder = new

    def preparing(self) -> list[dict[str, Any]]:
        """One-time work still under way (``/health``): what, how far, seconds left."""
        return self.progress.pending()

    def close(self) -> None:
        """Stop starting background work (the scheduler cancels what is queued)."""
        with self._lock:
            self._closed = True
            self._active.clear()

    def unload(self) -> None:  # residency: engine.idle_unload_s
        if self._decoder is not None:
            self._decoder.unload()

    def reload(self) -> None:
        if self._decoder is not None:
            self._decoder.reload()

    def warmup(self, voice: Voice, ids: list[int], options: Any = None) -> None:
        """Run the plan graphs and every fixed window length once (ORT plans per shape)."""
        with self._lock:  # only what is there: warm-up runs before the event loop does
            stats = self._priors.get(voice.name)
        if stats is None or self._decoder is None:
            return
        style = voice.style_for(len(ids))
        plan = self._decoder.plan(ids, style, 1.0, stats.for_ids(len(ids)), options)
        for core in self._decoder.window_sizes:
            if core <= plan.frames:
                self._decoder.decode_window(plan, 0, core, options)

    # --- the decoder, in the background --------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: calibrate the first voices, after deriving the graphs in a
        low-priority thread and opening them if the decoder is not open."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started, self._loop = True, loop
        if self._decoder is not None or self._source is None:
            self._calibrate_wanted()
            return
        src = self._source
        self.progress.begin("graphs", src.what, 1, src.seconds)
        _LOGGER.info(
            "%s (once per %s): about %.0f s on 2 cores, in the background at low priority",
            src.what, src.once, src.seconds,
        )  # fmt: skip
        in_low_priority_thread(
            self._source.derive,
            lambda graphs, took: self._call_soon(self._open_decoder, graphs, took),
            lambda err: self._call_soon(self._give_up, f"{err}"),
        )

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the engine is going
                self._loop.call_soon_threadsafe(fn, *args)

    def _give_up(self, why: str) -> None:
        self.progress.end("graphs")
        self.disabled = why
        _LOGGER.warning("Windowed decoding off: %s; decoding whole segments", why)

    def _open_decoder(self, graphs: WindowedGraphs, derive_seconds: float) -> None:
        self.progress.advance("graphs", derive_seconds)
        _LOGGER.info("Windowed graphs ready in %.1f s; opening their sessions", derive_seconds)
        assert self._source is not None
        source = self._source
        if not self._submit(lambda: source.open(graphs), self._decoder_opened):
            self.progress.end("graphs")

    def _decoder_opened(self, fut: Any) -> None:
        self.progress.end("graphs")
        if fut.cancelled() or fut.exception() is not None:
            self._give_up(f"{'cancelled' if fut.cancelled() else fut.exception()}")
            return
        self._decoder = fut.result()
        for then in self._on_open:
            then(self._decoder)
        self._on_open.clear()
        self._calibrate_wanted()

    def _calibrate_wanted(self) -> None:
        with self._lock:
            wanted, self._wanted = list(self._wanted), {}
        for name in wanted:
            self._calibrate_later(name)

    def _submit(self, fn: Callable[[], Any], then: Callable[[Any], None]) -> bool:
        """Queue a background job; False (nothing queued) once the engine is closing."""
        with self._lock:
            if self._closed:
                return False
        try:
            job = self.scheduler.submit(fn, IDLE, admit=False, background=True)
        except RuntimeError:  # the scheduler closed: the engine is stopping
            return False
        job.result.add_done_callback(then)
        return True

    # --- priors -------------------------------------------------------------------------

    def _plan(self, name: str, full: bool) -> Plan:
        """How ``name`` is calibrated: quickly (every voice, first: 6 decodes, +0.16 dB
        log-mel over the full plan, bench/results/priors.md), or fully (the reference
        voice's refinement, once its quick priors serve: 15 decodes)."""
        assert self._decoder is not None
        table, lang = self._voice_table(name)
        texts = calibration_ids(lang, self.text_count)
        if not full:  # measured: no transfer of the reference's row curve
            texts = [texts[i] for i in QUICK_TEXTS if i < len(texts)]
        anchors = self.anchors if full else QUICK_ANCHORS
        path = priors_path(self._decoder, name, table, texts, anchors)
        return Plan(table, texts, anchors, None, path)

    def load_cached(self, name: str) -> bool:
        """Load ``name``'s priors if they are on disk (milliseconds; startup); True if so.
        The reference voice's full priors win over its quick ones (then still refined)."""
        if self._decoder is None:
            return False
        for full in (True, False) if name == self._reference else (False,):
            try:
                priors = NormPriors.load(self._plan(name, full).path)
            except (OSError, ValueError, KeyError):
                continue
            self._done(name, priors, quick=not full)
            return True
        return False

    def has_priors(self, name: str) -> bool:
        """``name``'s priors are loaded (nothing is started if they are not)."""
        with self._lock:
            return name in self._priors

    def forget(self, name: str) -> None:
        """Drop ``name``'s priors from memory and disk (they are rebuilt on next use)."""
        if self._decoder is not None:
            for full in (False, True):
                self._plan(name, full).path.unlink(missing_ok=True)
        with self._lock:
            self._priors.pop(name, None)
            self._quick.discard(name)
            self._blends.clear()

    def priors_for(self, voice: Voice) -> NormPriors | None:
        """``voice``'s priors (a blend's mixed), or None while they are being built.
        Priors cached on disk are read here, at once (a few hundred KB), so a voice's
        requests never switch from whole to windowed midway through a session."""
        parts = [p for p in parse_blend(voice.blend) if p.name]
        key = voice.blend  # a preset shares its voice's priors
        with self._lock:
            missing = [p.name for p in parts if p.name not in self._priors]
        for name in missing:
            self._calibrate_later(name)
        with self._lock:
            if len(parts) == 1 and parts[0].name == key:
                return self._priors.get(key)
            found = self._blends.get(key)
            if found is None and parts and all(p.name in self._priors for p in parts):
                found = NormPriors.blend(
                    [(self._priors[p.name], p.weight or 1.0) for p in parts], key
                )
                if len(self._blends) < MAX_BLENDS:
                    self._blends[key] = found
            return found

    def _calibrate_later(self, name: str) -> None:
        """Queue ``name``'s calibration (cache first, if present), then the reference
        voice's refinement: one short decode per preemptible background job at idle
        priority (:meth:`_next_step`), so a request never waits behind one for long."""
        if self._decoder is None or not self._started:
            if self.disabled is None:
                with self._lock:
                    self._wanted.setdefault(name)
                if not self._started:  # built without a loop: start from this request's
                    with contextlib.suppress(RuntimeError):
                        self._start(asyncio.get_running_loop())
            return
        if name not in self._priors:
            self.load_cached(name)
        with self._lock:
            if self._closed or name in self._calibrating:
                return
            loaded = name in self._priors
            if loaded and (name not in self._quick or name != self._reference):
                return  # served by its priors, and nothing to refine
            self._calibrating.add(name)
        self._begin(name, refine=loaded)

    def _begin(self, name: str, refine: bool) -> None:
        """Start ``name``'s calibration: quick, or the full one that refines its priors
        (last in line: a new voice's decodes go first)."""
        cal = Calibration.of(name, self._plan(name, full=refine), refine)
        with self._lock:
            self._active.append(cal)
            self._active.sort(key=lambda c: c.refine)  # stable: otherwise in order asked
        what = "Refining norm priors" if refine else "Norm priors"
        self.progress.begin(cal.key, f"{what} for {name}", len(cal.steps), STEP_SECONDS)
        cal.started = time.perf_counter()
        _LOGGER.info(
            "%s for %s in the background (%d decodes at idle priority); %s",
            "Refining the norm priors" if refine else "Building norm priors",
            name,
            len(cal.steps),
            "it is windowed meanwhile" if refine else "its segments are decoded whole until then",
        )
        self._next_step()

    def _next_step(self) -> None:
        """Submit the calibrations' next decodes, a new voice's before a refinement (on
        the event loop): one per worker after :data:`QUIET_SECONDS` without requests, else
        one, so that under a steady load a request arriving finds a worker free and
        aborts nothing (6 decodes on 2 vCPUs: idle 12.9 s one at a time, 9.9 s two at
        once; a request every 0.65 s: 14.3 s one at a time, 17.7 s two at once)."""
        with self._lock:
            if self._closed:
                return
            active = list(self._active)
        decoder = self._decoder
        assert decoder is not None
        sched = self.scheduler
        free = sched.workers if sched.quiet_seconds() >= QUIET_SECONDS else 1
        free -= sum(c.in_flight for c in active)
        for cal in (c for c in active for _ in list(c.todo)):  # a voice's steps, in turn
            if free <= 0:
                return
            free -= 1
            step = cal.todo.pop(0)
            _, ids, style = cal.steps[step]
            job = preemptible(
                lambda options, ids=ids, style=style: self._stats(decoder, ids, style, options),
                decoder.run_options,
                lambda worker: self._closed or sched.background_should_yield(worker),
            )
            cal.in_flight += 1
            collect = functools.partial(self._collect, cal, step)
            if not self._submit(job, collect):
                self.close()
                return

    _stats = staticmethod(decode_stats)  # one calibration decode (tests trace it here)

    def _collect(self, cal: Calibration, step: int, fut: Any) -> None:
        cal.in_flight -= 1  # on the event loop, as every change of the counts
        with self._lock:
            closed = self._closed
        if closed or fut.cancelled():  # the engine is stopping: nothing to report
            return
        err = fut.exception()
        if err is None and fut.result() is PREEMPTED:
            cal.preempted += 1
            cal.todo.insert(0, step)  # the same decode again, once no request waits
        elif err is None:
            took, frames, mean, var = fut.result()
            cal.pool.add(cal.steps[step][0], frames, mean, var)
            cal.done += 1
            self.progress.advance(cal.key, took, log_every=max(1, len(cal.steps) // 3))
        elif cal.error is None:
            _LOGGER.warning("Norm priors for %s not built: %s", cal.name, err)
            cal.error, cal.todo = err, []
        if cal.in_flight == 0 and (cal.error is not None or cal.done == len(cal.steps)):
            self._finish(cal)
        self._next_step()

    def _finish(self, cal: Calibration) -> None:
        """``cal`` is done (or failed): its priors in use and saved; the reference voice's
        quick ones are refined next."""
        self.progress.end(cal.key)
        with self._lock:
            self._active.remove(cal)
            self._calibrating.discard(cal.name)
        if cal.error is not None:
            return
        priors = cal.pool.priors(cal.name, cal.pool_channels(self._decoder))
        priors.save(cal.path)
        self._done(cal.name, priors, quick=not cal.refine)
        _LOGGER.info(
            "Norm priors for %s %s in %.1f s (%d decodes, %d preempted by requests)%s",
            cal.name,
            "refined" if cal.refine else "ready",
            time.perf_counter() - cal.started,
            len(cal.steps),
            cal.preempted,
            "" if cal.refine else ": its segments are now windowed",
        )
        if not cal.refine and cal.name == self._reference:
            self._calibrate_later(cal.name)

    def _done(self, name: str, priors: NormPriors, quick: bool) -> None:
        with self._lock:
            self._priors[name] = priors
            (self._quick.add if quick else self._quick.discard)(name)
            self._calibrating.discard(name)
            self._blends.clear()
