"""The engine both front ends share: text in, 24 kHz float32 PCM chunks out.

``Engine(...)`` only wires parts together (no I/O), so tests can pass fakes;
``builder.build_engine(cfg, files)`` reads the model, voices and G2P (engine/builder.py).
:meth:`Engine.prepare` is the one validation of a request; :meth:`Engine.synthesize`
takes its result and runs it as a :class:`SpeechStream`. G2P runs in worker threads
and model calls in the scheduler's threads: the event loop never blocks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import numpy as np

from .errors import (
    EmptyText,
    InvalidSpeed,
    LanguageMismatch,
    TextTooLong,
    UnknownVoice,
)
from .model.runtime import KokoroSession
from .model.voices import Voice, VoiceStore
from .serving.admission import Admission
from .serving.pcm import default_kernels
from .serving.plan import Prepared, Segment, SegmentPlanner
from .serving.renders import (
    Due,
    Render,
    WholeAudio,
    WholeRender,
    WindowedRender,
    estimate_seconds,
    submit_call,
)
from .serving.scheduler import Job, Priority, Scheduler
from .serving.stream import SpeechStream
from .serving.timing import SegmentTiming, TimedChunk, approximate_durations
from .serving.trace import RequestTrace, TraceSink
from .settings import EngineConfig
from .text.cleanup import Pause, clean, has_speech, split_pauses
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.sentences import split_sentences
from .text.vocab import Vocab
from .types import MAX_SPEED, MIN_SPEED, SAMPLE_RATE, SynthesisRequest, VoiceInfo

if TYPE_CHECKING:  # onnx (which the split needs) is imported only when it is used
    from .model.residency import Residency
    from .serving.calibration import WindowedBackend

__all__ = ["Engine", "Prepared", "Segment"]

_LOGGER = logging.getLogger(__name__)


class Engine:
    """The loaded model and its catalog, and the entry points both front ends call:
    ``voices()``, ``voice_for()``, ``prepare()`` and ``synthesize()``."""

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
        windowed: WindowedBackend | None = None,
        residency: Residency | None = None,
    ) -> None:
        self.cfg = cfg
        self.residency = residency  # idle unload (engine.idle_unload_s), or None
        self.windowed = windowed  # None: whole-segment decoding only
        self.voice_store = voices
        self.vocab = vocab
        self.g2p = g2p
        self.session = session
        self.scheduler = scheduler
        self.languages = languages
        self.traces = traces  # per-request timings, when profiling is on
        self._streams: set[SpeechStream] = set()
        self._arrivals = 0  # requests admitted so far
        self.admission = Admission(cfg.limits, scheduler, self._starting_streams)
        self._seq = itertools.count()

    # --- warm-up ------------------------------------------------------------------------

    def warmup(self) -> None:
        """One model call per shape class so the first real request is as fast as the tenth."""
        voice = self.voice_store.resolve(self.cfg.default_voice)
        for n in (8, 48) if not self.session.lazy else ():  # lazy: closed, windows serve
            ids = self.vocab.encode("hˈɛlO wˈɜɹld " * 8)[:n]
            self.session.run(ids, voice.style_for(len(ids)), 1.0)
        if self.windowed is not None:  # the plan graphs, and each fixed window shape once
            self.windowed.warmup(voice, self.vocab.encode("hˈɛlO wˈɜɹld " * 12))
        default_kernels().warmup()  # numba compiles (or loads its cache) here

    def close(self) -> None:
        if self.residency is not None:
            self.residency.close()
        if self.windowed is not None:  # no new background job once the scheduler closes
            self.windowed.close()
        self.scheduler.close()
        trace = self.session.end_profiling()
        if trace:
            _LOGGER.info("ONNX Runtime profile written to %s", trace)

    @property
    def provider(self) -> str:
        return self.session.provider

    @property
    def preparing(self) -> list[dict[str, object]]:
        """One-time work still under way in the background (``/health`` lists it)."""
        return list(self.windowed.preparing()) if self.windowed is not None else []

    @functools.cached_property
    def planner(self) -> SegmentPlanner:
        """Text -> segments; built on first use (unit tests wire an engine without a model)."""
        return SegmentPlanner(self.g2p, self.vocab, self.cfg.segmentation, self.capacity)

    @property
    def capacity(self) -> int:
        """Longest segment: the model's limit, or less if configured (peak memory)."""
        return min(self.session.contract.capacity, self.cfg.segmentation.max_tokens)

    # --- catalog ------------------------------------------------------------------------

    def voices(self) -> list[VoiceInfo]:
        return list(self.voice_store.infos)

    def default_voice(self, lang: str | None = None) -> str:
        """The voice used when a request names none: the configured default, or for a
        language, that language's (the configured one if it speaks it)."""
        if lang is None:
            return self.cfg.default_voice
        code = self.languages.resolve(lang).code
        name = self.voice_store.default_for(code, self.cfg.default_voice)
        if name is None:
            raise UnknownVoice(f"no installed voice speaks {lang!r}", param="lang")
        return name

    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice:
        """The one default-voice rule: a named voice (or blend), else ``lang``'s default,
        else the configured default. Raises UnknownVoice / UnknownLanguage."""
        code = self.languages.resolve(lang).code if lang else None
        return self.voice_store.resolve(voice or self.default_voice(code))

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
        voice = self.voice_for(req.voice, lang.code if lang else None)
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
        if not pieces:
            raise EmptyText(
                "input has no speakable text (only symbols, emoji or control characters)"
            )
        return Prepared(pieces, voice, lang.code, float(req.speed), req.normalize)

    @property
    def active_streams(self) -> int:
        """Requests synthesizing now."""
        return len(self._streams)

    def _starting_streams(self) -> float:
        """Admitted requests without their first audio yet, as the share of a first
        audio's cost still ahead of them: a whole one while the text is in G2P, half
        once the first model call is queued (that job is counted in the queue too)."""
        return sum(1.0 if s.renders == 0 else 0.5 for s in self._streams if not s.playing)

    async def synthesize(
        self,
        prep: Prepared | SynthesisRequest,
        *,
        interactive: bool = False,
        admitted: bool = False,
    ) -> AsyncGenerator[np.ndarray, None]:
        """Float32 mono chunks at 24 kHz, one per segment or pause, as they are ready.

        ``prep`` comes from :meth:`prepare` (a bare request is prepared here, for the
        Python API). ``interactive``: a client with a listener waiting that does not retry
        (Wyoming): admitted under a longer wait bound, its jobs ahead of bulk ones
        (engine/serving/admission.py). Raises Busy before the first chunk if refused.
        ``admitted``: it continues a reply already admitted (the next sentence of a
        Wyoming stream), so it is never refused: half a reply is worse than none. Closing
        the iterator (or cancelling the task that drives it) drops its queued model calls
        at once.
        """
        if isinstance(prep, SynthesisRequest):
            prep = self.prepare(prep)
        run = self._run(prep, interactive=interactive, admitted=admitted, words=False)
        async with contextlib.aclosing(run) as chunks:
            async for chunk in chunks:
                yield chunk.audio

    async def synthesize_timed(
        self, prep: Prepared, *, interactive: bool = False
    ) -> AsyncGenerator[TimedChunk, None]:
        """:meth:`synthesize` with word timestamps: :class:`TimedChunk` s, each with its
        float32 ``audio`` and the ``words`` that finished in the audio so far (text as
        written, seconds from the start of the output). The audio is the same."""
        run = self._run(prep, interactive=interactive, admitted=False, words=True)
        async with contextlib.aclosing(run) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _run(
        self, prep: Prepared, *, interactive: bool, admitted: bool, words: bool
    ) -> AsyncGenerator[TimedChunk, None]:
        """Admit, stream and account one request (both public entry points)."""
        wait = self.admission.check(self.active_streams, interactive, admitted=admitted)
        trace = RequestTrace(
            self.traces,
            chars=sum(len(p) for p in prep.pieces if isinstance(p, str)),
            voice=prep.voice.name,
            lang=prep.lang,
        )
        stream = SpeechStream(
            prep,
            self.planner.plan(prep, words=words),
            self._start_render,
            self.cfg,
            next(self._seq),
            trace,
            lead=self.admission.lead(interactive),
        )
        self._streams.add(stream)
        self._arrivals += 1
        arrival = self._arrivals
        try:
            # aclosing: closing this generator closes the stream's at once (drops its work)
            async with contextlib.aclosing(stream.timed_chunks(with_words=words)) as chunks:
                calibrate = not admitted  # its first audio tells the admission how it did
                async for chunk in chunks:
                    self.admission.note_audio(chunk.audio.size / SAMPLE_RATE)
                    if calibrate and stream.playing:
                        calibrate = False
                        waited = stream.playback_start - stream.t0
                        joined = self._arrivals != arrival  # others came meanwhile
                        self.admission.observe_first_audio(waited, wait, joined=joined)
                    yield chunk
        finally:
            self._streams.discard(stream)

    def _start_render(
        self, seg: Segment, prep: Prepared, due: Due, trace: RequestTrace, admit: bool
    ) -> Render:
        """Queue ``seg``'s work: windowed when the model was split and the voice's norm
        priors are ready, else one whole call."""
        priors = self.windowed.priors_for(prep.voice) if self.windowed is not None else None
        decoder = self.windowed.decoder if self.windowed is not None else None
        if priors is not None and decoder is not None:
            style = prep.voice.style_for(len(seg.ids))
            stats = priors.for_ids(len(seg.ids))

            def submit_plan() -> Job:
                return submit_call(
                    self.scheduler,
                    lambda options: decoder.plan(seg.ids, style, prep.speed, stats, options),
                    decoder.run_options(),
                    len(seg.ids),
                    due(0.0),
                    trace,
                    admit=admit,
                )

            return WindowedRender(
                seg,
                decoder,
                self.scheduler,
                submit_plan,
                prep.speed,
                self.cfg.decoder.window_lookahead,
                trace,
            )
        return WholeRender(
            self._submit_whole(seg, prep, due(0.0), trace, admit),
            estimate_seconds(seg, prep.speed),
            seg,
        )

    def _submit_whole(
        self,
        seg: Segment,
        prep: Prepared,
        priority: Priority,
        trace: RequestTrace,
        admit: bool,
    ) -> Job:
        style = prep.voice.style_for(len(seg.ids))

        def work(options: object) -> np.ndarray | WholeAudio:
            if seg.words:
                return self._whole_timed(seg, style, prep.speed, options)
            return seg.trim_join(self.session.run(seg.ids, style, prep.speed, options))

        return submit_call(
            self.scheduler,
            work,
            self.session.run_options(),
            len(seg.ids),
            priority,
            trace,
            admit=admit,
        )

    def _whole_timed(
        self, seg: Segment, style: np.ndarray, speed: float, options: object
    ) -> WholeAudio:
        """One whole call and its token durations: the fixed-bucket contract returns them;
        for a classic model the split model's front graph (~5 % of a call) predicts the
        same ones; without it they are estimated from the audio (timing.py)."""
        audio, durations, spf = self.session.run_timed(seg.ids, style, speed, options)
        decoder = self.windowed.decoder if self.windowed is not None else None
        if durations is None and decoder is not None:
            durations = decoder.durations(seg.ids, style, speed, options)
        if durations is None:
            durations = approximate_durations(len(seg.ids), audio, spf)
        start, stop = seg.join_bounds(audio)
        return WholeAudio(audio[start:stop], SegmentTiming(durations, spf, start))

    def phonemize(self, text: str, lang: str) -> str:
        """The phonemes the model would get for ``text`` (for tests and /dev tools)."""
        code = self.languages.resolve(lang).code
        return " ".join(
            self.vocab.keep(self.g2p.phonemize(s, code)) for s in split_sentences(clean(text), code)
        )


def _compatible(requested: str, voice_lang: str) -> bool:
    # American and British voices read either accent natively.
    return requested == voice_lang or {requested, voice_lang} == {"a", "b"}
