"""A fake engine for front-end unit tests that must control timing or failures.

It validates nothing itself: the catalog, the default-voice rule and every check are a
real :class:`~fastkokoro_wyoming.engine.requests.Requests` over the tiny catalog
(tests/support/tiny_engine.py), so an error it raises is the engine's, word for word.
What it fakes is the audio: one 0.25 s sine chunk per '.'-piece of the text, each after
``delay``, and a record of every request it synthesized. Tests that only need a real
answer use a real Engine on the tiny graph instead (``tiny_engine``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace

import numpy as np

from fastkokoro_wyoming.config import WyomingConfig
from fastkokoro_wyoming.engine.model.voices import Voice
from fastkokoro_wyoming.engine.protocol import AdmissionState, ModelState, SpeechEngine
from fastkokoro_wyoming.engine.requests import Requests
from fastkokoro_wyoming.engine.serving.plan import Prepared
from fastkokoro_wyoming.engine.serving.timing import TimedChunk
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from fastkokoro_wyoming.engine.types import SAMPLE_RATE, SynthesisRequest, VoiceInfo
from tests.support.tiny_engine import SpellingG2P, tiny_config, voice_store


@dataclass(frozen=True)
class FakePrepared(Prepared):
    """A real :class:`Prepared` that also keeps the request it came from."""

    request: SynthesisRequest | None = None


class FakeEngine:
    """Yields one 0.25 s sine chunk per sentence-ish piece of text ('.' splits)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, delay: float = 0.0, default_voice: str = "af_heart") -> None:
        self.delay = delay
        languages = LanguageTable()
        store = voice_store(languages)  # the tiny engine's catalog
        self._catalog = list(store.infos)
        self.validation = Requests(
            tiny_config(default_voice=default_voice),
            voices=store,
            vocab=Vocab.load(),
            g2p=SpellingG2P(languages),
            languages=languages,
            loudness=None,  # no loudness normalisation
        )
        self.requests: list[SynthesisRequest] = []
        self.residency = None  # no idle unload
        self.preparing: list[dict[str, object]] = []  # background work /health lists

    residency: ModelState | None
    admission: AdmissionState | None = None  # no admission: nothing refused
    provider = "fake"

    def voices(self) -> list[VoiceInfo]:
        return list(self._catalog)

    def default_voice(self, lang: str | None = None) -> str:
        return self.validation.default_voice(lang)

    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice:
        return self.validation.voice_for(voice, lang)

    def prepare(self, req: SynthesisRequest) -> Prepared:
        return self._keeping(self.validation.prepare(req), req)

    def prepare_phonemes(self, phonemes: str, voice: str | None, speed: float = 1.0) -> Prepared:
        """Checked as the engine checks phonemes; spoken like text here."""
        prep = self.validation.prepare_phonemes(phonemes, voice, speed)
        return self._keeping(prep, SynthesisRequest(phonemes, voice, None, speed))

    def phonemize_ids(self, text: str, lang: str) -> tuple[str, list[int]]:
        return self.validation.phonemize_ids(text, lang)

    @staticmethod
    def _keeping(prep: Prepared, req: SynthesisRequest) -> FakePrepared:
        fields = {f.name: getattr(prep, f.name) for f in dataclasses.fields(prep)}
        return FakePrepared(**fields, request=req)

    async def synthesize(
        self, prep: Prepared | SynthesisRequest, **_: object
    ) -> AsyncGenerator[np.ndarray, None]:
        if isinstance(prep, SynthesisRequest):
            prep = self.prepare(prep)
        assert isinstance(prep, FakePrepared) and prep.request is not None, prep
        req = prep.request
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
