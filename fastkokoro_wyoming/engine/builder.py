"""Building the engine: model session, voices, vocabulary, G2P, warm-up.

Kept apart from :class:`Engine` (which only serves requests) because building is
the one slow, blocking, I/O-heavy step: it runs once, in a thread. It imports the engine,
never the other way round (``assets.load_engine`` is what callers use).
"""

from __future__ import annotations

import cProfile
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine import Engine
from .errors import ConfigError, UnknownVoice
from .model.presets import check_presets
from .model.residency import Reloadable, Residency, trim_heap
from .model.runtime import KokoroSession, RuntimeSettings, is_gpu, resolve_runtime, session_options
from .model.voices import Voice, VoiceStore, parse_blend
from .model.weights import file_digest, plan_weights, prepare_model
from .serving.loudness import MEASURE_TEXTS, LoudnessTable
from .serving.scheduler import Scheduler
from .serving.trace import TraceSink
from .settings import EngineConfig, ModelFiles
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.lexicon import Lexicon
from .text.vocab import Vocab

if TYPE_CHECKING:
    from .model.windowed.decoder import WindowedDecoder
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
    vocab = Vocab.load(files.vocab)
    lexicon = None
    if cfg.lexicon:  # checked before the model loads: a bad entry refuses to start
        lexicon = Lexicon(Path(cfg.lexicon).expanduser(), vocab, languages)
        _LOGGER.info("Lexicon %s: %d entries", lexicon.path, lexicon.size())
    settings = runtime_settings(cfg)
    gpu = is_gpu(settings.providers[0])
    cache_dir = Path(cfg.model.cache_dir).expanduser()
    weights = plan_weights(cfg.model.weights, files.model, gpu=gpu)
    voices = VoiceStore.load(files.voices, languages)
    voices.add_presets(  # before the model loads: a typo stops startup at once
        check_presets(
            cfg.voices.presets,
            lambda spec: (voices.resolve(spec).name, voices.resolve(spec).lang),
            voices.__contains__,
            languages,
            cfg.allow_cross_language,
        )
    )
    model = prepare_model(files.model, weights, cache_dir)
    session = KokoroSession.open(model, settings)
    g2p = G2P(languages, lexicon)
    decoder = None
    if cfg.decoder.streaming and session.contract.kind == "classic":
        decoder = _open_decoder(cfg, model, cache_dir, settings)
    residency = None
    if cfg.idle_unload_s > 0:  # its hooks reload the sessions before a job: built first
        parts: list[Reloadable] = [session] if decoder is None else [session, decoder]
        residency = Residency(
            parts,
            cfg.idle_unload_s,
            lambda: scheduler.idle() and engine.active_streams == 0,
        )
    # workers resolved with the threads (runtime.cpu_split)
    scheduler = Scheduler(settings.workers, cfg.limits.max_queue, hooks=residency)
    windowed = _windowed_backend(decoder, scheduler, voices) if decoder is not None else None
    engine = Engine(
        cfg,
        voices=voices,
        vocab=vocab,
        g2p=g2p,
        session=session,
        scheduler=scheduler,
        languages=languages,
        traces=TraceSink(settings.profile_dir) if settings.profile_dir is not None else None,
        windowed=windowed,
        residency=residency,
    )
    try:  # a blend is a fine default too
        voices.resolve(cfg.default_voice)
    except UnknownVoice as err:
        raise ConfigError(f"engine.default_voice: {err.message}") from err
    for code in cfg.languages:
        g2p.warm(languages.resolve(code).code)
    startup_voices = (cfg.default_voice, *cfg.decoder.calibrate_voices, *voices.presets)
    if windowed is not None:  # the presets are the voices Home Assistant will use
        for name in dict.fromkeys(startup_voices):
            for part in parse_blend(voices.resolve(name).blend):
                windowed.prepare_voice(part.name)
    if windowed is not None and windowed.priors_for(voices.resolve(cfg.default_voice)):
        # The split graphs carry the same weights: while the default voice is windowed, the
        # whole model only serves voices whose priors are still being built; it is reopened
        # by the first such call (~1 s) instead of holding ~150 MB for it.
        session.lazy = True
        session.unload()
        trim_heap()
    if cfg.loudness_lufs is not None:
        engine.loudness = _loudness_table(cfg, engine, model, cache_dir)
        for name in dict.fromkeys((cfg.default_voice, *voices.presets)):
            engine.loudness.measure_now(voices.resolve(name), name == cfg.default_voice)
    if cfg.warmup:
        if settings.profile_dir is not None:  # where first-audio regressions hide: warmup
            profile = cProfile.Profile()
            profile.runcall(engine.warmup)
            profile.dump_stats(str(settings.profile_dir / "warmup.prof"))
        else:
            engine.warmup()
    if residency is not None:
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


def _loudness_table(
    cfg: EngineConfig, engine: Engine, model: Path, cache_dir: Path
) -> LoudnessTable:
    """engine.loudness_lufs: measurements decoded the way the voice's requests are (windowed
    with its priors, else whole), cached per model file."""
    windowed = engine.windowed

    def render(voice: Voice, ids: list[int], style: np.ndarray) -> Callable[[], np.ndarray]:
        priors = windowed.priors_for(voice) if windowed is not None else None
        if windowed is not None and priors is not None:
            decoder, stats = windowed.decoder, priors.for_ids(len(ids))
            return lambda: decoder.decode_whole(decoder.plan(ids, style, 1.0, stats))
        return lambda: engine.session.run(ids, style, 1.0)

    if windowed is not None:
        cache = windowed.decoder.graphs.directory / "loudness.json"
    else:
        cache = cache_dir / "loudness" / f"{model.stem}-{file_digest(model)}.json"
    english = [engine.vocab.encode(engine.phonemize(t, "a")) for t in MEASURE_TEXTS]

    def settled(voice: Voice) -> bool:  # windowed from now on, or never
        return windowed is None or windowed.priors_for(voice) is not None

    return LoudnessTable(
        cfg.loudness_lufs, render, engine.scheduler, engine.capacity, cache, english, settled
    )


def _open_decoder(
    cfg: EngineConfig, model: Path, cache_dir: Path, settings: RuntimeSettings
) -> WindowedDecoder | None:
    """The split model's decoder, with the same providers and options as the model's.
    Fixed-bucket exports keep whole buckets (their graphs are not split)."""
    try:
        from .serving.calibration import open_decoder
    except ImportError as err:  # onnx missing: the split needs it
        _LOGGER.warning("Windowed decoding off: %s; decoding whole segments", err)
        return None
    t0 = time.perf_counter()
    decoder = open_decoder(
        model,
        cache_dir,
        cfg.decoder,
        session_options(settings),
        settings.session_providers(),
        fixed_shapes=is_gpu(settings.providers[0]),
    )
    if decoder is not None:
        _LOGGER.info("Windowed decoding ready in %.1f s", time.perf_counter() - t0)
    return decoder


def _windowed_backend(
    decoder: WindowedDecoder, scheduler: Scheduler, voices: VoiceStore
) -> WindowedBackend:
    """The decoder and the voices' norm priors (calibrated through ``scheduler``)."""
    from .serving.calibration import WindowedBackend  # importable: the decoder opened

    def voice_table(name: str) -> tuple[np.ndarray, str]:
        voice = voices.resolve(name)
        return voice.styles, voice.lang

    return WindowedBackend(decoder, scheduler, voice_table)
