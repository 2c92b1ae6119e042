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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .engine import Engine, segment_capacity
from .errors import ConfigError, UnknownVoice
from .model.presets import check_presets
from .model.residency import Reloadable, Residency, trim_heap
from .model.runtime import KokoroSession, RuntimeSettings, is_gpu, resolve_runtime, session_options
from .model.voices import Voice, VoiceStore, parse_blend
from .model.weights import file_digest, plan_weights, prepare_model
from .requests import phonemes_of, spoken_pieces
from .serving.loudness import MEASURE_TEXTS, LoudnessTable
from .serving.scheduler import Scheduler
from .serving.trace import TraceSink
from .settings import EngineConfig, ModelFiles
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.lexicon import Lexicon
from .text.vocab import Vocab

if TYPE_CHECKING:
    from .serving.acceleration import Acceleration
    from .serving.calibration import WindowedBackend

_LOGGER = logging.getLogger(__name__)
# graphs cached, but not the int8 rewrite's check and timing for this CPU and onnxruntime:
# seconds here, minutes on a small ARM board or under emulation, so not before "ready"
INT8_CHECK = "Checking the int8 convolutions on this CPU"
INT8_CHECK_SECONDS = 10.0
# besides the startup voices, what the OpenVINO int8 trunk calibrates on: other kinds of voice
CALIBRATION_VOICES = ("am_michael", "bf_emma", "af_bella")


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
    try:  # a blend is a fine default too
        voices.resolve(cfg.default_voice)
    except UnknownVoice as err:
        raise ConfigError(f"engine.default_voice: {err.message}") from err
    model = prepare_model(files.model, weights, cache_dir)
    session = KokoroSession.open(model, settings)
    g2p = G2P(languages, lexicon)
    for code in cfg.languages:
        g2p.warm(languages.resolve(code).code)
    residency = None
    parts: list[Reloadable] = [session]  # the windowed backend joins once it exists
    if cfg.idle_unload_s > 0:  # its hooks reload the sessions before a job: built first
        residency = Residency(
            parts,
            cfg.idle_unload_s,
            lambda: scheduler.idle() and engine.active_streams == 0,
        )
    # workers resolved with the threads (runtime.cpu_split)
    scheduler = Scheduler(settings.workers, cfg.limits.max_queue, hooks=residency)
    windowed = None
    if cfg.decoder.streaming and session.contract.kind == "classic":
        windowed = _open_windowed(cfg, model, cache_dir, settings, scheduler, voices, loop)
    if windowed is not None:
        parts.append(windowed)  # before anything runs: residency starts below
    if windowed is not None and all(windowed.has_priors(n) for n in _first_voices(cfg, voices)):
        # The split graphs carry the same weights: while the default voice is windowed, the
        # whole model only serves voices whose priors are still being built; it is reopened
        # by the first such call (~1 s) instead of holding ~150 MB for it. (Prepared in the
        # background instead, it stays open until the next start.)
        session.lazy = True
        session.unload()
        trim_heap()
    loudness = None
    if cfg.loudness_lufs is not None:  # the presets are the voices Home Assistant will use
        loudness = _loudness_table(cfg, session, scheduler, windowed, vocab, g2p, model, cache_dir)
        first = [voices.resolve(n) for n in dict.fromkeys((cfg.default_voice, *voices.presets))]
        loudness.measure_soon(first, first[0], loop)  # cached now, else in the background
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
        loudness=loudness,
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


def _loudness_table(
    cfg: EngineConfig,
    session: KokoroSession,
    scheduler: Scheduler,
    windowed: WindowedBackend | None,
    vocab: Vocab,
    g2p: G2P,
    model: Path,
    cache_dir: Path,
) -> LoudnessTable:
    """engine.loudness_lufs: measurements decoded the way the voice's requests are (windowed
    with its priors, else whole), cached per model file."""

    def render(voice: Voice, ids: list[int], style: np.ndarray) -> Callable[[], np.ndarray]:
        priors = windowed.priors_for(voice) if windowed is not None else None
        decoder = windowed.decoder if windowed is not None else None
        if decoder is not None and priors is not None:
            stats = priors.for_ids(len(ids))
            return lambda: decoder.decode_whole(decoder.plan(ids, style, 1.0, stats))
        return lambda: session.run(ids, style, 1.0)

    # per decoding: windowed with priors is ~1.4 LU louder than whole calls (af_heart)
    decoding = "windowed" if windowed is not None else "whole"
    cache = cache_dir / "loudness" / f"{model.stem}-{file_digest(model)}-{decoding}.json"
    english = [vocab.encode(phonemes_of(spoken_pieces(t), "a", g2p, vocab)) for t in MEASURE_TEXTS]
    capacity = segment_capacity(session, cfg)

    def settled(voice: Voice) -> bool:  # windowed from now on, or never
        return windowed is None or windowed.priors_for(voice) is not None

    return LoudnessTable(cfg.loudness_lufs, render, scheduler, capacity, cache, english, settled)


def _first_voices(cfg: EngineConfig, voices: VoiceStore) -> list[str]:
    """The voices whose priors are prepared first: the default's, calibrate_voices' and
    the presets' (the voices Home Assistant will use), blends as their parts."""
    names = dict.fromkeys((cfg.default_voice, *cfg.decoder.calibrate_voices, *voices.presets))
    blends = (voices.resolve(n).blend for n in names)
    return list(dict.fromkeys(p.name for b in blends for p in parse_blend(b) if p.name))


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
        from .model.windowed import int8select
        from .model.windowed.decoder import WindowedDecoder
        from .model.windowed.graphs import WindowedGraphs, derive
        from .serving.calibration import DecoderSource, WindowedBackend
    except ImportError as err:  # onnxruntime pieces missing
        _LOGGER.warning("Windowed decoding off: %s; decoding whole segments", err)
        return None
    d = cfg.decoder

    cpu = not is_gpu(settings.providers[0])

    def open_decoder(graphs: WindowedGraphs) -> WindowedDecoder:
        if cpu:  # int8-weight convolutions where a one-time check finds them faster
            from .model.windowed.int8select import with_int8

            graphs = with_int8(graphs, d.int8_convolutions)
        return WindowedDecoder(
            graphs,
            session_options(settings),
            settings.session_providers(),
            context=d.context,
            first=d.first_window,
            growth=d.window_growth,
            max_frames=d.max_window,
            fixed_shapes=not cpu,  # GPUs: a few shapes; CPU: exact lengths
        )

    def derived() -> WindowedGraphs:  # in the background thread: every slow step
        graphs = derive(model, cache_dir)
        return int8select.prepare(graphs, d.int8_convolutions) if cpu else graphs

    first = _first_voices(cfg, voices)
    source = DecoderSource(derived, open_decoder)
    acceleration = _acceleration(cfg, settings, gpu=not cpu, voices=voices, first=first)
    decoder = None
    if graphs_cached(model, cache_dir):
        t0 = time.perf_counter()
        try:
            graphs = derive(model, cache_dir)
            if not cpu or int8select.is_ready(graphs, d.int8_convolutions):
                decoder = open_decoder(graphs)
            else:  # a new CPU or onnxruntime: check and time the int8 graphs first
                source = replace(source, what=INT8_CHECK, once="CPU and onnxruntime version",
                                 seconds=INT8_CHECK_SECONDS)  # fmt: skip
        except (ImportError, ValueError) as err:  # GraphNotSupported and friends
            _LOGGER.warning("Windowed decoding off for %s: %s; whole segments", model.name, err)
            return None
        if decoder is not None:
            _LOGGER.info("Windowed decoding ready in %.1f s", time.perf_counter() - t0)
    backend = WindowedBackend(decoder, scheduler, voice_table, source=source,
                              first_voices=first, loop=loop)  # fmt: skip
    if acceleration is not None and loop is not None:
        loop.call_soon_threadsafe(acceleration.attach, backend, loop)
    for name in first:  # cached priors now (milliseconds); the rest in the background
        backend.load_cached(name)
    todo = [f"the norm priors of {n}" for n in first if not backend.has_priors(n)]
    if decoder is None:
        todo.insert(0, "the windowed decoder's graphs" if source.what != INT8_CHECK else
                    "the int8 convolutions' check on this CPU")  # fmt: skip
    if todo:
        _LOGGER.info(
            "First start with this model or voice: %s are prepared in the background (tens "
            "of CPU seconds, once; kept in %s). Until then replies are decoded whole: their "
            "first audio comes after the whole sentence (1-3 s here) instead of after 0.3 s",
            " and ".join(todo),
            cache_dir,
        )
    return backend


def _acceleration(
    cfg: EngineConfig, settings: RuntimeSettings, gpu: bool, voices: VoiceStore, first: list[str]
) -> Acceleration | None:
    """``engine.runtime.backend``: the OpenVINO generator to prepare in the background, or
    None (one log line says why, unless the backend was set to onnxruntime). Its int8
    trunk is calibrated on the startup voices (``first``) and two of other kinds."""
    from .serving.acceleration import Acceleration, decide

    mode = cfg.runtime.backend
    if mode == "onnxruntime" or (gpu and mode == "auto"):
        return None

    def calibration() -> list[tuple[list[int], np.ndarray]]:
        from .model.windowed.norm_stats import calibration_ids

        names = [n for n in dict.fromkeys((*first, *CALIBRATION_VOICES)) if n in voices]
        out = []
        for name in names[:4]:
            voice = voices.resolve(name)
            out += [(ids, voice.style_for(len(ids))) for ids in calibration_ids(voice.lang)]
        return out

    decision = decide(mode, gpu, precision=cfg.runtime.openvino_precision)
    acc = Acceleration(mode, decision, settings.workers, settings.intra_op_threads, calibration)
    acc.log_decision()
    return acc if acc.decision.precision is not None else None


def graphs_cached(model: Path, cache_dir: Path) -> bool:
    """The windowed graphs of ``model`` are in ``cache_dir`` (graphs.derive's layout)."""
    from .model.windowed.graphs import FORMAT_VERSION

    meta = cache_dir / "windowed" / f"{Path(model).stem}-{file_digest(Path(model))}" / "meta.json"
    try:
        return json.loads(meta.read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False
