"""What the engine holds for windowed decoding: the split model and each voice's priors.

The split graphs are derived once per model file and cached (graphs.py). A voice needs
its norm priors (norm_stats.py) before its segments can be windowed: the default voice
and ``engine.decoder.calibrate_voices`` get them at startup (from the cache, or built
then: tens of CPU seconds, once per voice and model); any other voice is calibrated in
the background the first time it is asked for, one short decode per scheduler job at
the lowest priority (it runs only when no request is waiting), and is decoded whole
until its priors are ready. A blend takes the weighted mix of its voices' priors.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..model.voices import Voice, parse_blend
from ..model.windowed.decoder import WindowedDecoder
from ..model.windowed.norm_stats import (
    DEFAULT_ANCHORS,
    NormPriors,
    StatsPool,
    calibration_ids,
    flatten_stats,
    load_or_calibrate,
    priors_path,
)
from ..settings import DecoderConfig
from .scheduler import IDLE, Scheduler

_LOGGER = logging.getLogger(__name__)
MAX_BLENDS = 64


class WindowedBackend:
    """The windowed decoder and a per-voice table of norm priors; thread-safe."""

    def __init__(
        self,
        decoder: WindowedDecoder,
        scheduler: Scheduler,
        voice_table: Callable[[str], tuple[np.ndarray, str]],
    ) -> None:
        self.decoder = decoder
        self.scheduler = scheduler
        self._voice_table = voice_table  # name -> (style table, language code)
        self._priors: dict[str, NormPriors] = {}
        self._blends: dict[str, NormPriors] = {}
        self._calibrating: set[str] = set()
        self._backlog: list[_Calibration] = []  # voices waiting for background calibration
        self._lock = threading.Lock()

    def warmup(self, voice: Voice, ids: list[int]) -> None:
        """Run the plan graphs and every fixed window length once (ORT plans per shape)."""
        style = voice.style_for(len(ids))
        stats = self.priors_for(voice)
        if stats is None:
            return
        plan = self.decoder.plan(ids, style, 1.0, stats.for_ids(len(ids)))
        for core in self.decoder.window_sizes:
            if core <= plan.frames:
                self.decoder.decode_window(plan, 0, core)

    # --- priors -------------------------------------------------------------------------

    def prepare_voice(self, name: str) -> None:
        """Load or build ``name``'s priors now (blocking; startup)."""
        table, lang = self._voice_table(name)
        priors = load_or_calibrate(self.decoder, name, table, lang)
        with self._lock:
            self._priors[name] = priors

    def forget(self, name: str) -> None:
        """Drop ``name``'s priors from memory and disk (they are rebuilt on next use)."""
        table, lang = self._voice_table(name)
        path = priors_path(self.decoder, name, table, calibration_ids(lang), DEFAULT_ANCHORS)
        path.unlink(missing_ok=True)
        with self._lock:
            self._priors.pop(name, None)
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
        """Queue ``name``'s calibration (cache first, if present). Voices are calibrated
        one at a time, one short decode per background job at idle priority, so at most
        one such job waits and a request never queues behind more than one."""
        with self._lock:
            if name in self._calibrating or name in self._priors:
                return
            self._calibrating.add(name)
        table, lang = self._voice_table(name)
        texts = calibration_ids(lang)
        path = priors_path(self.decoder, name, table, texts, DEFAULT_ANCHORS)
        if path.is_file():
            self._done(name, NormPriors.load(path))
            return
        styles = np.asarray(table, np.float32).reshape(-1, table.shape[-1])
        steps = [(a, ids, styles[row : row + 1]) for a, row in enumerate(DEFAULT_ANCHORS)
                 for ids in texts]  # fmt: skip
        with self._lock:
            self._backlog.append(_Calibration(name, path, steps, StatsPool(DEFAULT_ANCHORS)))
            idle = len(self._backlog) == 1
        if idle:
            _LOGGER.info("Building norm priors for %s in the background", name)
            self._next_step()

    def _next_step(self) -> None:
        """Submit the head calibration's next decode (called on the event loop)."""
        with self._lock:
            if not self._backlog:
                return
            cal = self._backlog[0]
            anchor, ids, style = cal.steps[cal.done]
        job = self.scheduler.submit(
            lambda: self._stats(ids, style), IDLE, admit=False, background=True
        )
        job.result.add_done_callback(lambda fut: self._collect(cal, anchor, fut))

    def _stats(self, ids: list[int], style: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        xgen, f0, phase, _ = self.decoder.analyse(ids, style, 1.0)
        stats = self.decoder.exact_stats(xgen, f0, phase, style)
        mean, var = flatten_stats(stats, self.decoder.graphs.norm_count)
        return int(xgen.shape[-1]), mean, var

    def _collect(self, cal: _Calibration, anchor: int, fut: Any) -> None:
        failed = fut.cancelled() or fut.exception() is not None
        if failed:
            err = "cancelled" if fut.cancelled() else fut.exception()
            _LOGGER.warning("Norm priors for %s not built: %s", cal.name, err)
        else:
            cal.pool.add(anchor, *fut.result())
            cal.done += 1  # on the event loop: no lock needed for the count
        if failed or cal.done == len(cal.steps):
            if not failed:
                priors = cal.pool.priors(cal.name, self.decoder.graphs.channels)
                priors.save(cal.path)
                self._done(cal.name, priors)
                _LOGGER.info("Norm priors for %s ready: its segments are now windowed", cal.name)
            with self._lock:
                self._calibrating.discard(cal.name)
                self._backlog.pop(0)
                more = bool(self._backlog)
            if more:
                _LOGGER.info("Building norm priors for %s in the background", self._backlog[0].name)
        self._next_step()

    def _done(self, name: str, priors: NormPriors) -> None:
        with self._lock:
            self._priors[name] = priors
            self._calibrating.discard(name)
            self._blends.clear()


def open_decoder(
    model: Path,
    cache_dir: Path,
    settings: DecoderConfig,
    session_options: Any,
    providers: list[Any],
    fixed_shapes: bool = False,
) -> WindowedDecoder | None:
    """The split model's decoder for :class:`WindowedBackend`, or None (one log line)
    when this model cannot be split. Opened apart from the backend, which needs the
    scheduler, because the scheduler's hooks (idle unload) need the decoder first.

    ``fixed_shapes``: round windows up to a handful of lengths (for GPUs: CUDA graphs,
    TensorRT engines per shape); on a CPU exact lengths are ~30 % cheaper."""
    try:
        return WindowedDecoder.open(
            model,
            cache_dir,
            session_options,
            providers,
            context=settings.context,
            first=settings.first_window,
            growth=settings.window_growth,
            max_frames=settings.max_window,
            fixed_shapes=fixed_shapes,
            int8=settings.int8_convolutions,
        )
    except ImportError as err:
        _LOGGER.warning("Windowed decoding off: %s (pip install onnx); whole segments", err)
        return None
    except ValueError as err:  # GraphNotSupported and friends
        _LOGGER.warning("Windowed decoding off for %s: %s; whole segments", model.name, err)
        return None


@dataclass
class _Calibration:
    """One voice's background calibration: its decodes and what they pooled so far."""

    name: str
    path: Path
    steps: list[tuple[int, list[int], np.ndarray]]  # (anchor index, ids, style row)
    pool: StatsPool
    done: int = 0
