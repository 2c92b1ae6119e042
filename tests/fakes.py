"""A fake engine for front-end unit tests: same surface as the real Engine, no model."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from fastkokoro_wyoming.engine.errors import EmptyText, InvalidSpeed, UnknownVoice
from fastkokoro_wyoming.engine.types import SAMPLE_RATE, SynthesisRequest, VoiceInfo


class FakeEngine:
    """Yields one 0.25 s sine chunk per sentence-ish piece of text ('.' splits)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[SynthesisRequest] = []
        self.ready = True
        self._voices = [
            VoiceInfo("af_heart", "a", "en-US", "female"),
            VoiceInfo("bf_emma", "b", "en-GB", "female"),
            VoiceInfo("jf_alpha", "j", "ja-JP", "female"),
        ]

    def voices(self) -> list[VoiceInfo]:
        return list(self._voices)

    def default_voice(self, lang: str | None = None) -> str:
        for v in self._voices:
            if lang is None or v.lang == lang or v.locale.lower() == str(lang).lower():
                return v.name
        return "af_heart"

    def prepare(self, req: SynthesisRequest) -> SynthesisRequest:
        if not req.text.strip():
            raise EmptyText("text is empty")
        if not 0.25 <= req.speed <= 4.0:
            raise InvalidSpeed(f"speed {req.speed} is outside 0.25-4.0")
        names = {v.name for v in self._voices}
        if req.voice is not None and req.voice not in names:
            raise UnknownVoice(f"unknown voice {req.voice!r}")
        return req

    async def synthesize(self, req: SynthesisRequest) -> AsyncIterator[np.ndarray]:
        self.prepare(req)
        self.requests.append(req)
        pieces = [p for p in req.text.split(".") if p.strip()] or [req.text]
        t = np.arange(SAMPLE_RATE // 4, dtype=np.float32) / SAMPLE_RATE
        for _ in pieces:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


@dataclass(frozen=True)
class WyomingSettings:
    """What the Wyoming front end reads from WyomingConfig, plus a default voice."""

    host: str = "127.0.0.1"
    port: int = 0
    zeroconf: bool = False
    zeroconf_name: str = "fastkokoro-test"
    samples_per_chunk: int = 1024
    default_voice: str | None = None
    program_name: str = "kokoro"
    idle_timeout_s: float = 120.0
    max_event_bytes: int = 1_048_576
    drain_timeout_s: float = 2.0
