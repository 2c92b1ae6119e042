"""One loudness for every voice (``engine.loudness_lufs``): each voice's level, measured once.

Kokoro's voices differ by ~5 LU (af_sky and am_michael ~-23 LUFS, am_adam ~-18 on the
same text), so switching voices is switching volume. Each voice or blend is measured once
(BS.1770, engine/serving/meter.py) on a few short texts, decoded the way its requests
are (windowed decoding with priors is ~1.4 LU louder than whole calls for af_heart), and
brought to the target by a gain; a peak limiter per stream (:class:`~.meter.Leveller`)
keeps samples under -1 dBFS.

Measurements are cached on disk by model, decoding and voice table, so they cost once per
install (4 s of CPU a voice here; tens of seconds on a small ARM board, which is why none
is made before the server is ready). Right after start the default voice and the presets'
voices are measured in the background, each as soon as it decodes as its requests will
(windowed: once its norm priors are ready); any other voice the first time it is asked
for. Each is one short decode per scheduler job at idle priority (after every request's
work), like the norm priors. Until then a voice's requests get the default voice's gain
(once measured: two requests in a row sound alike), and before that :data:`TYPICAL_LUFS`'s;
a request never waits for a measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..model.voices import Voice
from ..model.windowed.norm_stats import calibration_ids
from ..types import SAMPLE_RATE
from .meter import db_to_gain, integrated_loudness
from .scheduler import IDLE, Scheduler

_LOGGER = logging.getLogger(__name__)
VERSION = 2  # of the measurement (texts, meter): part of the cache key
# English measurement texts: what an assistant says (a timer, a state, a forecast, a
# question), read through the real G2P. Kokoro's hand-written calibration phonemes
# (norm_stats.py) came out ~0.6 LU quieter than G2P'd sentences, so they serve only the
# other languages. None of these is a test or benchmark sentence.
MEASURE_TEXTS = (
    "Okay, I've set a timer for fifteen minutes.",
    "The living room lights are now off, and the front door is locked.",
    "Tomorrow will be cloudy in the morning, with a chance of rain after two o'clock.",
    "Do you want me to add milk and eggs to your shopping list?",
)
MAX_VOICES = 512  # blends are measured too; don't grow without bound
# a voice's level before anything is measured on a fresh install: the median of 22 voices
# and blends measured here (-23.8 to -13.3 LUFS; af_heart -21.9), so a first reply is
# ~1 LU off for most voices instead of the 3-5 LU no gain at all would leave
TYPICAL_LUFS = -21.0
WANTED_POLL_S = 1.0  # how often voices waiting for their priors are looked at again

# (voice, ids, style row) -> a call giving float32 audio of one model call at speed 1,
# decoded the way that voice's requests are (windowed with its priors, or whole). The
# outer call is cheap and runs on the event loop; the one it returns, in a worker thread.
Render = Callable[[Voice, list[int], np.ndarray], Callable[[], np.ndarray]]


class LoudnessTable:
    """Measured integrated loudness per voice or blend, and the gain toward the target."""

    def __init__(
        self,
        target_lufs: float | None,
        render: Render,
        scheduler: Scheduler,
        capacity: int,
        cache_file: Path | None = None,
        english: list[list[int]] | None = None,
        settled: Callable[[Voice], bool] = lambda voice: True,
    ) -> None:
        self.target = target_lufs
        self.render = render
        self.scheduler = scheduler
        self.capacity = max(8, capacity)  # ids per model call (fixed-bucket models: small)
        self.cache_file = cache_file
        self.english = english  # MEASURE_TEXTS as ids (G2P'd once at startup), or None
        # whether ``voice`` decodes now as it will from now on (windowed: its norm priors
        # are ready); a measurement waits for that, or it would be of the wrong decoding
        self.settled = settled
        self._measured: dict[str, float] = {}  # voice.blend -> LUFS
        self._disk: dict[str, float] = self._read_cache()
        self._pending: set[str] = set()
        self._backlog: list[Voice] = []
        self._lock = threading.Lock()
        # gain of a voice not measured yet: the default voice's once it is measured
        self.fallback_db = 0.0 if target_lufs is None else target_lufs - TYPICAL_LUFS
        self._fallback_key: str | None = None
        self._wanted: list[Voice] = []  # measured right after start, once settled

    @property
    def enabled(self) -> bool:
        return self.target is not None

    def measured(self, voice: Voice) -> float | None:
        """The loudness measured for ``voice`` (its voice or blend), if known yet."""
        with self._lock:
            return self._measured.get(_key(voice))

    # --- the gain a request gets ----------------------------------------------------------

    def gain_for(self, voice: Voice) -> float:
        """Linear gain bringing ``voice`` to the target (1.0 when off). Never waits: an
        unmeasured voice gets :attr:`fallback_db` and is measured in the background."""
        if self.target is None:
            return 1.0
        if self._wanted:  # the startup voices, when there was no loop to poll from
            self._poll_wanted()
        lufs = self._cached(voice)
        if lufs is not None:
            return db_to_gain(self.target - lufs)
        if self.settled(voice):
            self._measure_later(voice)
        return db_to_gain(self.fallback_db)

    # --- measuring --------------------------------------------------------------------

    def measure_soon(
        self, voices: list[Voice], fallback: Voice, loop: asyncio.AbstractEventLoop | None
    ) -> None:
        """At startup (any thread): ``voices`` (the default one, ``fallback``, whose gain
        unmeasured voices get, and the presets') from the cache, else measured in the
        background from ``loop`` as soon as each is settled (without a loop: from the
        requests' gain lookups). Never waits."""
        if self.target is None:
            return
        with self._lock:
            self._fallback_key = _key(fallback)
        cached = self._cached(fallback)
        if cached is not None:
            self.fallback_db = self.target - cached
        unique = {_key(v): v for v in voices}.values()
        self._wanted = [v for v in unique if self._cached(v) is None]
        if self._wanted and loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the engine is going
                loop.call_soon_threadsafe(self._poll_wanted, loop)

    def measure_now(self, voice: Voice, fallback: bool = False) -> float:
        """Measure ``voice`` now unless cached (blocking: benches and tests). ``fallback``:
        its gain is also what unmeasured voices get."""
        lufs = self._measure_now(voice)
        if fallback and self.target is not None:
            self.fallback_db = self.target - lufs
        return lufs

    def _poll_wanted(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """On the loop: queue the wanted voices that are settled; look again later."""
        wanted, self._wanted = self._wanted, []
        for voice in wanted:
            if self.settled(voice):
                self._measure_later(voice)
            else:
                self._wanted.append(voice)
        if self._wanted and loop is not None and not self.scheduler.closed:
            with contextlib.suppress(RuntimeError):
                loop.call_later(WANTED_POLL_S, self._poll_wanted, loop)

    def _cached(self, voice: Voice) -> float | None:
        with self._lock:
            lufs = self._measured.get(_key(voice), self._disk.get(self._disk_key(voice)))
            if lufs is not None:
                self._measured[_key(voice)] = lufs
            return lufs

    def _measure_now(self, voice: Voice) -> float:
        cached = self._cached(voice)
        if cached is not None:
            return cached
        calls = [self.render(voice, ids, style) for ids, style in self._steps(voice)]
        audio = np.concatenate([call() for call in calls])
        return self._store(voice, audio)

    def _steps(self, voice: Voice) -> list[tuple[list[int], np.ndarray]]:
        """The measurement's model calls: English voices read :data:`MEASURE_TEXTS`, the
        others three short texts (their language's first), cut to the model's capacity."""
        steps = []
        english = self.english if voice.lang in ("a", "b") and self.english else None
        for ids in english or calibration_ids(voice.lang):
            for lo in range(0, len(ids), self.capacity):
                piece = ids[lo : lo + self.capacity]
                steps.append((piece, voice.style_for(len(piece))))
        return steps

    def _store(self, voice: Voice, audio: np.ndarray) -> float:
        lufs = integrated_loudness(audio, SAMPLE_RATE)
        if not math.isfinite(lufs):
            lufs = self.target if self.target is not None else -18.0  # silent: leave as is
        with self._lock:
            if len(self._measured) < MAX_VOICES:
                self._measured[_key(voice)] = lufs
            self._disk[self._disk_key(voice)] = lufs
            snapshot = dict(self._disk)
            if _key(voice) == self._fallback_key and self.target is not None:
                self.fallback_db = self.target - lufs  # the default voice: from now on
        self._write_cache(snapshot)
        _LOGGER.info("Loudness of %s: %.1f LUFS", voice.blend, lufs)
        return lufs

    def _measure_later(self, voice: Voice) -> None:
        """Queue ``voice``'s measurement: one model call per background job at idle
        priority, voices one at a time, so a request waits behind one short call at most.
        Needs the event loop (the jobs' results arrive there); without one: next time."""
        with self._lock:
            if _key(voice) in self._pending or len(self._pending) >= MAX_VOICES:
                return
            self._pending.add(_key(voice))
            self._backlog.append(voice)
            first = len(self._backlog) == 1
        if first:
            self._next(self._backlog[0], [], self._steps(self._backlog[0]))

    def _next(self, voice: Voice, done: list[np.ndarray], steps: list[Any]) -> None:
        if len(done) == len(steps):  # all rendered: measure and save in a worker thread
            audio = np.concatenate(done)
            job = self.scheduler.submit(
                lambda: self._store(voice, audio), IDLE, admit=False, background=True
            )
            job.result.add_done_callback(lambda fut: self._finished(voice, fut))
            return
        ids, style = steps[len(done)]
        try:
            job = self.scheduler.submit(
                self.render(voice, ids, style), IDLE, admit=False, background=True
            )
        except RuntimeError:  # the scheduler closed (shutdown)
            return

        def collect(fut: Any) -> None:
            if fut.cancelled() or fut.exception() is not None:
                self._finished(voice, fut)
                return
            done.append(np.asarray(fut.result(), np.float32).reshape(-1))
            self._next(voice, done, steps)

        job.result.add_done_callback(collect)

    def _finished(self, voice: Voice, fut: Any) -> None:
        if fut.cancelled() or fut.exception() is not None:
            err = "cancelled" if fut.cancelled() else fut.exception()
            _LOGGER.warning("Loudness of %s not measured: %s", voice.blend, err)
        with self._lock:
            self._pending.discard(_key(voice))
            self._backlog.pop(0)
            following = self._backlog[0] if self._backlog else None
        if following is not None:
            self._next(following, [], self._steps(following))

    # --- the cache on disk ----------------------------------------------------------------

    def _disk_key(self, voice: Voice) -> str:
        h = hashlib.sha256(np.ascontiguousarray(voice.styles, np.float32).tobytes())
        h.update(f"v{VERSION}:{voice.lang}".encode())
        return h.hexdigest()[:16]

    def _read_cache(self) -> dict[str, float]:
        if self.cache_file is None or not self.cache_file.is_file():
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            return {str(k): float(v) for k, v in data.get("voices", {}).items()}
        except (OSError, ValueError, AttributeError, TypeError):
            _LOGGER.warning("Ignoring unreadable loudness cache %s", self.cache_file)
            return {}

    def _write_cache(self, table: dict[str, float]) -> None:
        """Atomically (temp file + rename): a crash never leaves half a file. Runs in a
        worker thread (or at startup), never on the event loop."""
        if self.cache_file is None:
            return
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"version": VERSION, "voices": table}), encoding="utf-8")
            tmp.replace(self.cache_file)
        except OSError as err:
            _LOGGER.warning("Loudness cache not written (%s): %s", self.cache_file, err)


def _key(voice: Voice) -> str:
    """What a measurement is kept by in memory: the styles and the language read."""
    return f"{voice.blend}|{voice.lang}"
