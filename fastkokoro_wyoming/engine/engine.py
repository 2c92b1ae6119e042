"""The engine both front ends share: text in, 24 kHz float32 PCM chunks out.

``Engine(...)`` only wires parts together (no I/O), so tests can pass fakes;
``Engine.load(cfg)`` reads the model, voices and G2P. Validation happens in
:meth:`Engine.prepare`, before the first sample, with machine-readable codes.
G2P runs in worker threads and model calls in the scheduler's threads: the event
loop never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .segmentation import ends_sentence, segment
from .errors import (
    Busy,
    ConfigError,
    EmptyText,
    InvalidSpeed,
    LanguageMismatch,
    SynthesisTimeout,
    TextTooLong,
    UnknownVoice,
)
from .g2p import G2P
from .languages import LanguageTable
from .modelprep import plan_weights, prepare_model
from .pcm import default_kernels
from .runtime import KokoroSession, RuntimeSettings, available_providers, is_gpu
from .scheduler import Job, Scheduler
from .sentences import split_sentences
from .text import Pause, clean, has_speech, split_pauses
from .tokens import Vocab
from .trace import RequestTrace, TraceSink
from .types import MAX_SPEED, MIN_SPEED, SAMPLE_RATE, SynthesisRequest, VoiceInfo
from .voices import Voice, VoiceStore

if TYPE_CHECKING:  # config imports engine.errors; avoid the cycle at run time
    from ..config import EngineConfig

_LOGGER = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A validated request: everything needed to start producing audio."""

    pieces: tuple[str | Pause, ...]
    voice: Voice
    lang: str
    speed: float
    normalize: bool


@dataclass(frozen=True)
class Segment:
    ids: list[int]
    phonemes: str
    joins_prev: bool = False  # continues a sentence cut before it (comma or word)
    joins_next: bool = False  # ends at such a cut, not at a sentence end

    def trim_join(self, audio: np.ndarray) -> np.ndarray:
        """Kokoro pads every call with ~0.3 s of silence before and ~0.45 s after the
        speech; at a cut inside a sentence that would be a 0.75 s hole. Keep a phrase
        pause's worth instead (50 ms before, 100 ms after)."""
        if not (self.joins_prev or self.joins_next):
            return audio
        speech = default_kernels().trim_bounds(audio, JOIN_SILENCE_LEVEL)
        if speech.start == speech.stop:
            return audio
        start = max(0, speech.start - JOIN_LEAD) if self.joins_prev else 0
        stop = min(audio.size, speech.stop + JOIN_TAIL) if self.joins_next else audio.size
        return audio[start:stop]


JOIN_SILENCE_LEVEL = 1e-3  # -60 dBFS
JOIN_LEAD = SAMPLE_RATE * 50 // 1000
JOIN_TAIL = SAMPLE_RATE * 100 // 1000


class Engine:
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        voices: VoiceStore,
        vocab: Vocab,
        g2p: G2P,
        session: KokoroSession,
        scheduler: Scheduler,
        languages: LanguageTable,
        traces: TraceSink | None = None,
    ) -> None:
        self.cfg = cfg
        self.voice_store = voices
        self.vocab = vocab
        self.g2p = g2p
        self.session = session
        self.scheduler = scheduler
        self.languages = languages
        self.traces = traces  # per-request timings, when profiling is on
        self.ready = False
        self.active_streams = 0
        self._seq = itertools.count()

    # --- construction -------------------------------------------------------------------

    @classmethod
    async def load(cls, cfg: EngineConfig, assets: object | None = None) -> Engine:
        """Resolve and read the model, voices and G2P (in a thread), then warm up."""
        return await asyncio.to_thread(cls.load_sync, cfg, assets)

    @classmethod
    def load_sync(cls, cfg: EngineConfig, assets: object | None = None) -> Engine:
        from ..assets import Assets, resolve

        found: Assets = assets if isinstance(assets, Assets) else resolve(cfg.model)
        t0 = time.perf_counter()
        languages = LanguageTable()
        rt = cfg.runtime
        profile_dir = Path(rt.profile_dir).expanduser() if rt.profile_dir else None
        cache_dir = Path(cfg.model.cache_dir).expanduser()
        settings = RuntimeSettings(
            providers=rt.providers,
            provider_options=rt.provider_options,
            intra_op_threads=rt.intra_op_threads,
            inter_op_threads=rt.inter_op_threads,
            graph_optimization=rt.graph_optimization,
            cache_dir=cache_dir,
            profile_dir=profile_dir,
            io_binding=rt.io_binding,
            cuda_graph=rt.cuda_graph,
        )
        # Resolved once (fallbacks warned once); the session opens with the resolved list.
        settings = replace(settings, providers=tuple(available_providers(settings)))
        gpu = is_gpu(settings.providers[0])
        plan = plan_weights(cfg.model.weights, found.model, gpu=gpu)
        session = KokoroSession.open(prepare_model(found.model, plan, cache_dir), settings)
        voices = VoiceStore.load(found.voices, languages)
        g2p = G2P(languages)
        engine = cls(
            cfg,
            voices=voices,
            vocab=Vocab.load(found.vocab),
            g2p=g2p,
            session=session,
            scheduler=Scheduler(rt.workers or (2 if gpu else 1), cfg.limits.max_queue),
            languages=languages,
            traces=TraceSink(profile_dir) if profile_dir is not None else None,
        )
        try:  # a blend is a fine default too
            voices.resolve(cfg.default_voice)
        except UnknownVoice as err:
            raise ConfigError(f"engine.default_voice: {err.message}") from err
        for code in cfg.languages:
            g2p.warm(languages.resolve(code).code)
        if cfg.warmup:
            if profile_dir is not None:  # where first-audio regressions hide: warmup
                profile = cProfile.Profile()
                profile.runcall(engine.warmup)
                profile.dump_stats(str(profile_dir / "warmup.prof"))
            else:
                engine.warmup()
        engine.ready = True
        _LOGGER.info(
            "Engine ready in %.1f s: %d voices, provider %s",
            time.perf_counter() - t0,
            len(voices.names),
            session.provider,
        )
        return engine

    def warmup(self) -> None:
        """One model call per shape class so the first real request is as fast as the tenth."""
        voice = self.voice_store.resolve(self.cfg.default_voice)
        for n in (8, 48):
            ids = self.vocab.encode("hˈɛlO wˈɜɹld " * 8)[:n]
            self.session.run(ids, voice.style_for(len(ids)), 1.0)
        default_kernels().warmup()  # numba compiles (or loads its cache) here

    def close(self) -> None:
        self.scheduler.close()
        trace = self.session.end_profiling()
        if trace:
            _LOGGER.info("ONNX Runtime profile written to %s", trace)

    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def capacity(self) -> int:
        """Longest segment: the model's limit, or less if configured (peak memory)."""
        return min(self.session.contract.capacity, self.cfg.segmentation.max_tokens)

    # --- catalog ------------------------------------------------------------------------

    def voices(self) -> list[VoiceInfo]:
        return list(self.voice_store.infos)

    def default_voice(self, lang: str | None = None) -> str:
        if lang is None:
            return self.cfg.default_voice
        code = self.languages.resolve(lang).code
        name = self.voice_store.default_for(code, self.cfg.default_voice)
        if name is None:
            raise UnknownVoice(f"no installed voice speaks {lang!r}", param="lang")
        return name

    # --- requests -----------------------------------------------------------------------

    def prepare(self, req: SynthesisRequest) -> Prepared:
        """Validate ``req`` (raises an EngineError with a code); cheap, call it on the loop."""
        if (
            isinstance(req.speed, bool)
            or not isinstance(req.speed, int | float)
            or not (MIN_SPEED <= float(req.speed) <= MAX_SPEED)
        ):
            raise InvalidSpeed(
                f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}, got {req.speed!r}"
            )
        if not isinstance(req.text, str) or not req.text.strip():
            raise EmptyText("input text is empty")
        limit = self.cfg.limits.max_input_chars
        if len(req.text) > limit:
            raise TextTooLong(f"input is {len(req.text)} characters; the limit is {limit}")
        lang = self.languages.resolve(req.lang) if req.lang else None
        voice_name = req.voice or self.default_voice(lang.code if lang else None)
        voice = self.voice_store.resolve(voice_name)
        if lang is None:
            lang = self.languages.resolve(voice.lang)
        elif not self.cfg.allow_cross_language and not _compatible(lang.code, voice.lang):
            raise LanguageMismatch(
                f"voice {voice.name!r} speaks {self.languages.resolve(voice.lang).locale}, "
                f"not {lang.locale}; pick a {lang.locale} voice (e.g. "
                f"{self.voice_store.default_for(lang.code)}) or set "
                "engine.allow_cross_language"
            )
        pieces = tuple(p if isinstance(p, Pause) else clean(p) for p in split_pauses(req.text))
        pieces = tuple(p for p in pieces if isinstance(p, Pause) or has_speech(p))
        if not any(isinstance(p, str) for p in pieces):
            if pieces:  # only pause tokens: valid, silence
                return Prepared(pieces, voice, lang.code, float(req.speed), req.normalize)
            raise EmptyText(
                "input has no speakable text (only symbols, emoji or control characters)"
            )
        return Prepared(pieces, voice, lang.code, float(req.speed), req.normalize)

    async def synthesize(self, req: SynthesisRequest | Prepared) -> AsyncIterator[np.ndarray]:
        """Float32 mono chunks at 24 kHz, one per segment or pause, as they are ready.

        Errors in validation are raised before the first chunk. Closing the iterator
        (or cancelling the task that drives it) drops its queued model calls at once.
        """
        prep = req if isinstance(req, Prepared) else self.prepare(req)
        if self.active_streams >= self.cfg.limits.max_streams:
            raise Busy(
                f"{self.active_streams} requests are synthesizing; the limit is "
                f"{self.cfg.limits.max_streams}"
            )
        self.active_streams += 1
        seq = next(self._seq)
        trace = RequestTrace(
            self.traces,
            chars=sum(len(p) for p in prep.pieces if isinstance(p, str)),
            voice=prep.voice.name,
            lang=prep.lang,
        )
        outcome = "cancelled"
        plan = self._plan(prep)
        pending: deque[Job | np.ndarray] = deque()
        lookahead = self.cfg.segmentation.lookahead
        gap = np.zeros(
            int(SAMPLE_RATE * self.cfg.segmentation.boundary_silence_ms / 1000), dtype=np.float32
        )
        index = 0
        exhausted = False
        planning: asyncio.Future[Segment | np.ndarray | None] | None = None
        limit = self.cfg.limits.max_request_seconds
        deadline = time.monotonic() + limit
        try:
            while True:
                # Plan ahead (G2P in a thread, then queue the model call) while the head
                # segment renders, up to ``lookahead``; the head is yielded the moment it is
                # ready, not after the planning of the segments behind it.
                if planning is None and not exhausted and len(pending) <= lookahead:
                    plan_started = time.perf_counter()
                    planning = asyncio.ensure_future(asyncio.to_thread(next, plan, None))
                    planning.add_done_callback(_retrieve)
                head = pending[0] if pending else None
                if head is None and planning is None:
                    outcome = "done"
                    return
                if isinstance(head, np.ndarray):
                    pending.popleft()
                    trace.chunk()
                    yield head  # a pause: silence already, no boundary gap
                    continue
                waiting = {f for f in (planning, head.result if head else None) if f}
                await asyncio.wait(
                    waiting,
                    timeout=max(deadline - time.monotonic(), 0),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if planning is not None and planning.done():
                    item, planning = planning.result(), None
                    trace.planned(plan_started)
                    if item is None:
                        exhausted = True
                    elif isinstance(item, np.ndarray):
                        pending.append(item)
                    else:
                        priority = (min(index, 1), index, seq)
                        pending.append(self._submit(item, prep, priority, trace))
                        index += 1
                if head is not None and head.result.done():
                    pending.popleft()
                    audio = head.result.result()
                    if gap.size and (pending or not exhausted):
                        audio = np.concatenate([audio, gap])
                    trace.chunk()
                    yield audio
                elif time.monotonic() >= deadline:
                    raise SynthesisTimeout(
                        f"the request ran past engine.limits.max_request_seconds ({limit} s)"
                    )
        except (GeneratorExit, asyncio.CancelledError):
            outcome = "cancelled"  # the client went away
            raise
        except BaseException as err:
            outcome = f"error: {getattr(err, 'code', type(err).__name__)}"
            raise
        finally:
            self.active_streams -= 1
            trace.close(outcome)
            for p in pending:
                if isinstance(p, Job):
                    p.cancel()
            if planning is not None:
                planning.cancel()
            # Cancelled while a worker thread runs next(plan) (G2P): the generator cannot be
            # closed from here; it stops after that one step, as nothing asks for more.
            with contextlib.suppress(ValueError):
                plan.close()

    def _submit(
        self, seg: Segment, prep: Prepared, priority: tuple[int, ...], trace: RequestTrace
    ) -> Job:
        style = prep.voice.style_for(len(seg.ids))
        options = self.session.run_options()
        submitted = time.perf_counter()

        def run() -> np.ndarray:
            started = time.perf_counter()
            try:
                return seg.trim_join(self.session.run(seg.ids, style, prep.speed, options))
            finally:
                trace.model_call(len(seg.ids), submitted, started, time.perf_counter())

        def abort() -> None:  # the client left while its segment runs: stop the call
            options.terminate = True

        return self.scheduler.submit(run, priority, abort)

    def _plan(self, prep: Prepared) -> Iterator[Segment | np.ndarray]:
        """Lazily: pauses as silence, text as G2P'd segments that fit the model."""
        seg_cfg = self.cfg.segmentation
        for piece in prep.pieces:
            if isinstance(piece, Pause):
                yield np.zeros(int(round(piece.seconds * SAMPLE_RATE)), dtype=np.float32)
                continue
            phonemes = (
                self.vocab.keep(self.g2p.phonemize(s, prep.lang, normalize=prep.normalize))
                for s in split_sentences(piece, prep.lang)
            )
            joined = False
            for ps in segment(
                phonemes,
                strategy=seg_cfg.strategy,
                capacity=self.capacity,
                first_tokens=seg_cfg.first_segment_tokens,
                chunk_tokens=seg_cfg.chunk_tokens,
            ):
                ids = self.vocab.encode(ps)
                if ids:
                    cut = not ends_sentence(ps)
                    yield Segment(ids, ps, joins_prev=joined, joins_next=cut)
                    joined = cut

    def phonemize(self, text: str, lang: str) -> str:
        """The phonemes the model would get for ``text`` (for tests and /dev tools)."""
        code = self.languages.resolve(lang).code
        return " ".join(
            self.vocab.keep(self.g2p.phonemize(s, code)) for s in split_sentences(clean(text), code)
        )


def _retrieve(fut: asyncio.Future[object]) -> None:
    """Mark a planning step's error as seen when its stream has already gone away."""
    if not fut.cancelled():
        fut.exception()


def _compatible(requested: str, voice_lang: str) -> bool:
    # American and British voices read either accent natively.
    return requested == voice_lang or {requested, voice_lang} == {"a", "b"}
