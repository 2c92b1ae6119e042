"""A fake engine for front-end unit tests: same surface as the real Engine, no model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

import numpy as np

from fastkokoro_wyoming.config import WyomingConfig
from fastkokoro_wyoming.engine.errors import EmptyText, InvalidSpeed, TextTooLong, UnknownVoice
from fastkokoro_wyoming.engine.model.voices import Voice
from fastkokoro_wyoming.engine.protocol import AdmissionState, ModelState, SpeechEngine
from fastkokoro_wyoming.engine.serving.plan import Prepared
from fastkokoro_wyoming.engine.serving.timing import TimedChunk
from fastkokoro_wyoming.engine.types import SAMPLE_RATE, SynthesisRequest, VoiceInfo


@dataclass(frozen=True)
class FakePrepared(Prepared):
    """A real :class:`Prepared` that also keeps the request it came from."""

    request: SynthesisRequest | None = None


class FakeEngine:
    """Yields one 0.25 s sine chunk per sentence-ish piece of text ('.' splits)."""

    sample_rate = SAMPLE_RATE
    max_input_chars = 4096  # the real engine's default limit (OpenAI's)

    def __init__(self, delay: float = 0.0, default_voice: str = "af_heart") -> None:
        self.delay = delay
        self.configured_voice = default_voice
        self.requests: list[SynthesisRequest] = []
        self.residency = None  # no idle unload
        self.preparing: list[dict[str, object]] = []  # background work /health lists
        self._voices = [
            VoiceInfo("af_heart", "a", "en-US", "female"),
            VoiceInfo("bf_emma", "b", "en-GB", "female"),
            VoiceInfo("jf_alpha", "j", "ja-JP", "female"),
        ]

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices)

    def default_voice(self, lang: str | None = None) -> str:
        if lang is None:
            return self.configured_voice
        for v in self._voices:
            if lang is None or v.lang == lang or v.locale.lower() == str(lang).lower():
                return v.name
        return "af_heart"

    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice:
        """The real engine's rule: a named voice, else the language's, else the default."""
        name = voice or self.default_voice(lang)
        info = next((v for v in self._voices if v.name == name), None)
        if info is None:
            raise UnknownVoice(f"unknown voice {name!r}")
        return Voice(info.name, info.lang, np.zeros((510, 256), np.float32))

    residency: ModelState | None
    admission: AdmissionState | None = None  # no admission: nothing refused
    provider = "fake"

    def prepare(self, req: SynthesisRequest) -> Prepared:
        if not req.text.strip():
            raise EmptyText("text is empty")
        if len(req.text) > self.max_input_chars:  # engine.limits.max_input_chars
            raise TextTooLong(
                f"input is {len(req.text)} characters; the limit is {self.max_input_chars}"
            )
        speed = 1.0 if req.speed is None else req.speed
        if not 0.25 <= speed <= 4.0:
            raise InvalidSpeed(f"speed {speed} is outside 0.25-4.0")
        names = {v.name for v in self._voices}
        if req.voice is not None and req.voice not in names:
            raise UnknownVoice(f"unknown voice {req.voice!r}")
        voice = self.voice_for(req.voice, req.lang)
        return FakePrepared((req.text,), voice, voice.lang, speed, req.normalize, request=req)

    def prepare_phonemes(self, phonemes: str, voice: str | None, speed: float = 1.0) -> Prepared:
        """Phonemes are spoken like text here (the fake has no vocabulary)."""
        return self.prepare(SynthesisRequest(phonemes, voice, None, speed))

    def phonemize_ids(self, text: str, lang: str) -> tuple[str, list[int]]:
        """Lowercased text as its "phonemes", one id per character."""
        if not text.strip():
            raise EmptyText("text is empty", param="text")
        phonemes = " ".join(text.lower().split())
        return phonemes, [ord(c) % 178 for c in phonemes]

    async def synthesize(
        self, prep: Prepared | SynthesisRequest, **_: object
    ) -> AsyncGenerator[np.ndarray, None]:
        req = prep.request if isinstance(prep, FakePrepared) else prep
        assert isinstance(req, SynthesisRequest)
        self.prepare(req)
        self.requests.append(req)
        pieces = [p for p in req.text.split(".") if p.strip()] or [req.text]
        t = np.arange(SAMPLE_RATE // 4, dtype=np.float32) / SAMPLE_RATE
        for _piece in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)

    async def synthesize_timed(
        self, prep: Prepared, **_: object
    ) -> AsyncGenerator[TimedChunk, None]:
        """The same audio with no word timings (the fake has no durations)."""
        async for audio in self.synthesize(prep):
            yield TimedChunk(audio, ())


def wyoming_settings(**changes: object) -> WyomingConfig:
    """The real WyomingConfig with test-friendly values: loopback, any port, no zeroconf."""
    base = WyomingConfig(
        host="127.0.0.1",
        port=0,
        zeroconf=False,
        zeroconf_name="fastkokoro-test",
        drain_timeout_s=2.0,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def as_speech_engine(fake: FakeEngine) -> SpeechEngine:
    """The fake typed as the engine protocol: pyright (CI) checks it still conforms."""
    return fake
