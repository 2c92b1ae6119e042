"""Building the engine: model session, voices, vocabulary, G2P, warm-up, windowed decoding.

Kept apart from :class:`Engine` (which only serves requests) because building is
the one slow, blocking, I/O-heavy step: it runs once, in a thread. It imports the engine,
never the other way round (``assets.load_engine`` is what callers use).
"""

from __future__ import annotations

import asyncio
import cProfile
import json
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
from .model.weights import file_digest, plan_weights, prepare_model
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
            graph_optimization=rt.graph_optimization,
            cache_dir=Path(cfg.model.cache_dir).expanduser(),
            profile_dir=Path(rt.profile_dir).expanduser() if rt.profile_dir else None,
            io_binding=rt.io_binding,
            cuda_graph=rt.cuda_graph,
        )
    )


def build_engine(
    cfg: EngineConfig, files: ModelFiles, loop: asyncio.AbstractEventLoop | None = None
) -> Engine:
    """Read everything, check the default voice, warm G2P and the model; blocking.

    Returns a finished engine as soon as the whole model can speak. What is not in the
    cache yet (the windowed decoder's graphs, the first voices' norm priors: tens of CPU
    seconds on a first start) is prepared in the background, driven from ``loop`` (else
    from the first request's); until then segments are decoded whole (``/health`` lists
    it, the log says how far it is)."""
    t0 = time.perf_counter()
    languages = LanguageTable()
    settings = runtime_settings(cfg)
    gpu = is_gpu(settings.providers[0])
    cache_dir = Path(cfg.model.cache_dir).expanduser()
    weights = plan_weights(cfg.model.weights, files.model, gpu=gpu)
    model = prepare_model(files.model, weights, cache_dir)
    session = KokoroSession.open(model, settings)
    voices = VoiceStore.load(files.voices, languages)
    try:  # a blend is a fine default too
        voices.resolve(cfg.default_voice)
    except UnknownVoice as err:
        raise ConfigError(f"engine.default_voice: {err.message}") from err
    g2p = G2P(languages)
    for code in cfg.languages:
        g2p.warm(languages.resolve(code).code)
    scheduler = Scheduler(cfg.runtime.workers or (2 if gpu else 1), cfg.limits.max_queue)
    windowed = None
    if cfg.decoder.streaming and session.contract.kind == "classic":
        windowed = _open_windowed(cfg, model, cache_dir, settings, scheduler, voices, loop)
    if windowed is not None and all(windowed.has_priors(n) for n in _first_voices(cfg)):
        # The split graphs carry the same weights: while the default voice is windowed, the
        # whole model only serves voices whose priors are still being built; it is reopened
        # by the first such call (~1 s) instead of holding ~150 MB for it. (Prepared in the
        # background instead, it stays open until the next start.)
        session.lazy = True
        session.unload()
        trim_heap()
    residency = None
    if cfg.idle_unload_s > 0:
        parts: list[Reloadable] = [session]
        if windowed is not None:
            parts.append(windowed)
        residency = Residency(
            parts,
            cfg.idle_unload_s,
            lambda: scheduler.idle() and engine.active_streams == 0,
        )
        scheduler.before_job, scheduler.after_job = residency.before_job, residency.after_job
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
        residency=residency,
    )
    if cfg.warmup:
        if settings.profile_dir is not None:  # where first-audio regressions hide: warmup
            profile = cProfile.Profile()
            profile.runcall(engine.warmup)
            profile.dump_stats(str(settings.profile_dir / "warmup.prof"))
        else:
            engine.warmup()
    if residency is not None:
        residency.start()
    preparing = windowed is not None and windowed.decoder is None
    _LOGGER.info(
        "Engine ready in %.1f s: %d voices (%d speakable here), provider %s, %s decoding",
        time.perf_counter() - t0,
        len(voices.names),
        len(voices.infos),
        session.provider,
        "whole-segment (windowed once prepared)"
        if preparing
        else "windowed"
        if windowed is not None
        else "whole-segment",
    )
    return engine


def _first_voices(cfg: EngineConfig) -> list[str]:
    """The voices whose priors are prepared first: the default's and calibrate_voices'."""
    names = dict.fromkeys((cfg.default_voice, *cfg.decoder.calibrate_voices))
    return list(dict.fromkeys(p.name for n in names for p in parse_blend(n) if p.name))


def _open_windowed(
    cfg: EngineConfig,
    model: Path,
    cache_dir: Path,
    settings: RuntimeSettings,
    scheduler: Scheduler,
    voices: VoiceStore,
    loop: asyncio.AbstractEventLoop | None,
) -> WindowedBackend | None:
    """The split model's backend, with the same providers and options as the model's:
    open now when its graphs are cached (a second or two), else prepared in the
    background. Fixed-bucket exports keep whole buckets (their graphs are not split)."""

    def voice_table(name: str) -> tuple[np.ndarray, str]:
        voice = voices.resolve(name)
        return voice.styles, voice.lang

    try:
        from .model.windowed.decoder import WindowedDecoder
        from .model.windowed.graphs import WindowedGraphs, derive
        from .serving.calibration import DecoderSource, WindowedBackend
    except ImportError as err:  # onnxruntime pieces missing
        _LOGGER.warning("Windowed decoding off: %s; decoding whole segments", err)
        return None
    d = cfg.decoder

    def open_decoder(graphs: WindowedGraphs) -> WindowedDecoder:
        return WindowedDecoder(
            graphs,
            session_options(settings),
            settings.session_providers(),
            context=d.context,
            first=d.first_window,
            growth=d.window_growth,
            max_frames=d.max_window,
            fixed_shapes=is_gpu(settings.providers[0]),  # GPUs: a few shapes; CPU: exact
        )

    first = _first_voices(cfg)
    source = DecoderSource(lambda: derive(model, cache_dir), open_decoder)
    decoder = None
    if graphs_cached(model, cache_dir):
        t0 = time.perf_counter()
        try:
            decoder = open_decoder(derive(model, cache_dir))
        except (ImportError, ValueError) as err:  # GraphNotSupported and friends
            _LOGGER.warning("Windowed decoding off for %s: %s; whole segments", model.name, err)
            return None
        _LOGGER.info("Windowed decoding ready in %.1f s", time.perf_counter() - t0)
    backend = WindowedBackend(decoder, scheduler, voice_table, source=source,
                              first_voices=first, loop=loop)  # fmt: skip
    for name in first:  # cached priors now (milliseconds); the rest in the background
        backend.load_cached(name)
    todo = [f"the norm priors of {n}" for n in first if not backend.has_priors(n)]
    if decoder is None:
        todo.insert(0, "the windowed decoder's graphs")
    if todo:
        _LOGGER.info(
            "First start with this model or voice: %s are prepared in the background (tens "
            "of CPU seconds, once; kept in %s). Until then replies are decoded whole: their "
            "first audio comes after the whole sentence (1-3 s here) instead of after 0.3 s",
            " and ".join(todo),
            cache_dir,
        )
    return backend


def graphs_cached(model: Path, cache_dir: Path) -> bool:
    """The windowed graphs of ``model`` are in ``cache_dir`` (graphs.derive's layout)."""
    from .model.windowed.graphs import FORMAT_VERSION

    meta = cache_dir / "windowed" / f"{Path(model).stem}-{file_digest(Path(model))}" / "meta.json"
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False
