"""Building the engine: model session, voices, vocabulary, G2P, warm-up.

Kept apart from :class:`Engine` (which only serves requests) because building is
the one slow, blocking, I/O-heavy step: it runs once, in a thread. It imports the engine,
never the other way round (``assets.load_engine`` is what callers use).
"""

from __future__ import annotations

import cProfile
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine import Engine
from .errors import ConfigError, UnknownVoice
from .model.residency import Reloadable, Residency, trim_heap
from .model.runtime import KokoroSession, RuntimeSettings, is_gpu, resolve_runtime, session_options
from .model.voices import VoiceStore, parse_blend
from .model.weights import plan_weights, prepare_model
from .serving.scheduler import Scheduler
from .serving.trace import TraceSink
from .settings import EngineConfig, ModelFiles
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.vocab import Vocab

if TYPE_CHECKING:
    from .serving.calibration import WindowedBackend

_LOGGER = logging.getLogger(__name__)


def runtime_settings(cfg: EngineConfig) -> RuntimeSettings:
    """The ``engine.runtime`` section as the runtime module takes it, providers resolved."""
    rt = cfg.runtime
    return resolve_runtime(
        RuntimeSettings(
            providers=rt.providers,
            provider_options=rt.provider_options,
            intra_op_threads=rt.intra_op_threads,
            inter_op_threads=rt.inter_op_threads,
            workers=rt.workers,
            graph_optimization=rt.graph_optimization,
            cache_dir=Path(cfg.model.cache_dir).expanduser(),
            profile_dir=Path(rt.profile_dir).expanduser() if rt.profile_dir else None,
            io_binding=rt.io_binding,
            cuda_graph=rt.cuda_graph,
        )
    )


def build_engine(cfg: EngineConfig, files: ModelFiles) -> Engine:
    """Read everything, check the default voice, warm G2P and the model; blocking."""
    t0 = time.perf_counter()
    languages = LanguageTable()
    settings = runtime_settings(cfg)
    gpu = is_gpu(settings.providers[0])
    cache_dir = Path(cfg.model.cache_dir).expanduser()
    weights = plan_weights(cfg.model.weights, files.model, gpu=gpu)
    model = prepare_model(files.model, weights, cache_dir)
    session = KokoroSession.open(model, settings)
    voices = VoiceStore.load(files.voices, languages)
    g2p = G2P(languages)
    scheduler = Scheduler(settings.workers, cfg.limits.max_queue)  # resolved: cpu_split
    windowed = None
    if cfg.decoder.streaming and session.contract.kind == "classic":
        windowed = _open_windowed(cfg, model, cache_dir, settings, scheduler, voices)
    engine = Engine(
        cfg,
        voices=voices,
        vocab=Vocab.load(files.vocab),
        g2p=g2p,
        session=session,
        scheduler=scheduler,
        languages=languages,
        traces=TraceSink(settings.profile_dir) if settings.profile_dir is not None else None,
        windowed=windowed,
    )
    try:  # a blend is a fine default too
        voices.resolve(cfg.default_voice)
    except UnknownVoice as err:
        raise ConfigError(f"engine.default_voice: {err.message}") from err
    for code in cfg.languages:
        g2p.warm(languages.resolve(code).code)
    if windowed is not None:
        for name in dict.fromkeys((cfg.default_voice, *cfg.decoder.calibrate_voices)):
            for part in parse_blend(name):
                windowed.prepare_voice(part.name)
    if windowed is not None and windowed.priors_for(voices.resolve(cfg.default_voice)):
        # The split graphs carry the same weights: while the default voice is windowed, the
        # whole model only serves voices whose priors are still being built; it is reopened
        # by the first such call (~1 s) instead of holding ~150 MB for it.
        session.lazy = True
        session.unload()
        trim_heap()
    if cfg.warmup:
        if settings.profile_dir is not None:  # where first-audio regressions hide: warmup
            profile = cProfile.Profile()
            profile.runcall(engine.warmup)
            profile.dump_stats(str(settings.profile_dir / "warmup.prof"))
        else:
            engine.warmup()
    if cfg.idle_unload_s > 0:
        parts: list[Reloadable] = [session]
        if windowed is not None:
            parts.append(windowed.decoder)
        residency = Residency(
            parts,
            cfg.idle_unload_s,
            lambda: scheduler.idle() and engine.active_streams == 0,
        )
        scheduler.before_job, scheduler.after_job = residency.before_job, residency.after_job
        engine.residency = residency
        residency.start()
    engine.ready = True
    _LOGGER.info(
        "Engine ready in %.1f s: %d voices (%d speakable here), provider %s, %s decoding",
        time.perf_counter() - t0,
        len(voices.names),
        len(voices.infos),
        session.provider,
        "windowed" if windowed is not None else "whole-segment",
    )
    return engine


def _open_windowed(
    cfg: EngineConfig,
    model: Path,
    cache_dir: Path,
    settings: RuntimeSettings,
    scheduler: Scheduler,
    voices: VoiceStore,
) -> WindowedBackend | None:
    """The split model's sessions, with the same providers and options as the model's.
    Fixed-bucket exports keep whole buckets (their graphs are not split)."""

    def voice_table(name: str) -> tuple[np.ndarray, str]:
        voice = voices.resolve(name)
        return voice.styles, voice.lang

    try:
        from .serving.calibration import WindowedBackend
    except ImportError as err:  # onnx missing: the split needs it
        _LOGGER.warning("Windowed decoding off: %s; decoding whole segments", err)
        return None
    t0 = time.perf_counter()
    backend = WindowedBackend.open(
        model,
        cache_dir,
        cfg.decoder,
        session_options(settings),
        settings.session_providers(),
        scheduler,
        voice_table,
        fixed_shapes=is_gpu(settings.providers[0]),
    )
    if backend is not None:
        _LOGGER.info("Windowed decoding ready in %.1f s", time.perf_counter() - t0)
    return backend
