"""The engine both front ends share: text in, 24 kHz float32 PCM chunks out.

``Engine(...)`` only wires parts together (no I/O), so tests can pass fakes;
``builder.build_engine(cfg, files)`` reads the model, voices and G2P (engine/builder.py).
:meth:`Engine.prepare` is the one validation of a request (engine/requests.py);
:meth:`Engine.synthesize` takes its result and runs it as a :class:`SpeechStream`. G2P
runs in worker threads and model calls in the scheduler's threads: the event loop never
blocks.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING

import numpy as np

from .model.runtime import KokoroSession
from .model.voices import Voice, VoiceStore
from .requests import Requests
from .serving.admission import Admission
from .serving.loudness import LoudnessTable
from .serving.meter import Leveller
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
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.vocab import Vocab
from .types import SAMPLE_RATE, SynthesisRequest, VoiceInfo

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
        loudness: LoudnessTable | None = None,
    ) -> None:
        self.cfg = cfg
        self.loudness = loudness  # engine.loudness_lufs: per-voice gains, or None (off)
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
        self.admission = Admission(
            cfg.limits,
            scheduler,
            self._starting_streams,
            interactive_streams=self._interactive_streams,
        )
        self._seq = itertools.count()
        self.requests = Requests(
            cfg,
            voices=voices,
            vocab=vocab,
            g2p=g2p,
            languages=languages,
            loudness=loudness,
        )

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
        return segment_capacity(self.session, self.cfg)

    # --- catalog ------------------------------------------------------------------------

    def voices(self) -> list[VoiceInfo]:
        return list(self.voice_store.infos)

    def default_voice(self, lang: str | None = None) -> str:
        """The voice used when a request names none (:meth:`Requests.default_voice`)."""
        return self.requests.default_voice(lang)

    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice:
        """The one default-voice rule (:meth:`Requests.voice_for`)."""
        return self.requests.voice_for(voice, lang)

    # --- requests -----------------------------------------------------------------------

    def prepare(self, req: SynthesisRequest) -> Prepared:
        """Validate ``req`` (engine/requests.py; raises an EngineError with a code)."""
        return self.requests.prepare(req)

    def prepare_phonemes(self, phonemes: str, voice: str | None, speed: float = 1.0) -> Prepared:
        """:meth:`prepare` for a phoneme string (``/dev/generate_from_phonemes``)."""
        return self.requests.prepare_phonemes(phonemes, voice, speed)

    def phonemize(self, text: str, lang: str) -> str:
        """The phonemes the model would get for ``text``; blocking (G2P)."""
        return self.requests.phonemize(text, lang)

    def phonemize_ids(self, text: str, lang: str) -> tuple[str, list[int]]:
        """:meth:`phonemize` and the model's ids (``/dev/phonemize``); blocking."""
        return self.requests.phonemize_ids(text, lang)

    @property
    def active_streams(self) -> int:
        """Requests synthesizing now."""
        return len(self._streams)

    def _interactive_streams(self) -> int:
        """Interactive requests synthesizing now (admission's present interactive load)."""
        return sum(1 for s in self._streams if s.urgency.interactive)

    def _starting_streams(self, interactive: bool) -> float:
        """Admitted requests of that kind without their first audio yet, as the share of
        a first audio's cost still ahead of them: a whole one while the text is in G2P,
        half once the first model call is queued (that job is counted in the queue too)."""
        return sum(
            1.0 if s.renders == 0 else 0.5
            for s in self._streams
            if not s.playing and s.urgency.interactive == interactive
        )

    async def synthesize(
        self,
        prep: Prepared | SynthesisRequest,
        *,
        interactive: bool = False,
        admitted: bool = False,
        needed_at: Callable[[], float] | None = None,
    ) -> AsyncGenerator[np.ndarray, None]:
        """Float32 mono chunks at 24 kHz, one per segment or pause, as they are ready.

        ``prep`` comes from :meth:`prepare` (a bare request is prepared here, for the
        Python API). ``interactive``: a client with a listener waiting that does not retry
        (Wyoming): admitted under a longer wait bound, its jobs ahead of bulk ones
        (engine/serving/admission.py). Raises Busy before the first chunk if refused.
        ``admitted``: it continues a reply already admitted (the next sentence of a
        Wyoming stream), so it is never refused: half a reply is worse than none.
        ``needed_at``: when (``time.monotonic``) its listener needs its first audio, read
        each time a worker picks a job; its jobs are due from then on, not from its
        arrival (a stream's next sentence, queued while the one before it plays). Closing
        the iterator (or cancelling the task that drives it) drops its queued model calls
        at once.
        """
        if isinstance(prep, SynthesisRequest):
            prep = self.prepare(prep)
        run = self._run(
            prep, interactive=interactive, admitted=admitted, words=False, needed_at=needed_at
        )
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
        self,
        prep: Prepared,
        *,
        interactive: bool,
        admitted: bool,
        words: bool,
        needed_at: Callable[[], float] | None = None,
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
            urgency=self.admission.urgency(interactive, wait),
            needed_at=needed_at,
        )
        level = Leveller(prep.gain, SAMPLE_RATE) if prep.level else None
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
                    if level is not None:
                        chunk = TimedChunk(level.apply(chunk.audio), chunk.words)
                    yield chunk
        finally:
            self._streams.discard(stream)

    def _start_render(
        self, seg: Segment, prep: Prepared, due: Due, trace: RequestTrace, admit: bool
    ) -> Render:
        """Queue ``seg``'s work: windowed when the model was split and the voice's norm
        priors are ready, else one whole call."""
        voice = seg.voice or prep.voice  # an SSML <lang>/<voice>/<prosody> segment's own
        speed = seg.speed if seg.speed is not None else prep.speed
        priors = self.windowed.priors_for(voice) if self.windowed is not None else None
        decoder = self.windowed.decoder if self.windowed is not None else None
        if priors is not None and decoder is not None:
            style = voice.style_for(len(seg.ids))
            stats = priors.for_ids(len(seg.ids))

            def submit_plan() -> Job:
                return submit_call(
                    self.scheduler,
                    lambda options: decoder.plan(seg.ids, style, speed, stats, options),
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
                speed,
                self.cfg.decoder.window_lookahead,
                trace,
            )
        return WholeRender(
            self._submit_whole(seg, prep, due(0.0), trace, admit),
            estimate_seconds(seg, speed),
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
        style = (seg.voice or prep.voice).style_for(len(seg.ids))
        speed = seg.speed if seg.speed is not None else prep.speed

        def work(options: object) -> np.ndarray | WholeAudio:
            if seg.words:
                return self._whole_timed(seg, style, speed, options)
            return seg.trim_join(self.session.run(seg.ids, style, speed, options))

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


def segment_capacity(session: KokoroSession, cfg: EngineConfig) -> int:
    """Ids per model call: the model's limit, or ``segmentation.max_tokens`` if lower
    (:attr:`Engine.capacity`; also the builder's, before the engine exists)."""
    return min(session.contract.capacity, cfg.segmentation.max_tokens)
