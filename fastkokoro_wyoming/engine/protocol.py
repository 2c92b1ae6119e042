"""The one contract between the engine and its front ends, checked by pyright.

Both front ends (``http_api/``, ``wyoming_api/``), the daemon and the test fakes are
typed against :class:`SpeechEngine`, so a change to :class:`~.engine.Engine` that a
front end depends on fails the type check instead of a request in production. It lists
exactly what they use: the catalog, the one validation (``prepare``) and the two ways to
run its result; plus the read-only state ``/health`` and ``/metrics`` report.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from typing import Protocol

import numpy as np

from .model.voices import Voice
from .serving.admission import WaitEstimate
from .serving.plan import Prepared
from .serving.timing import TimedChunk
from .types import SynthesisRequest, VoiceInfo


class ModelState(Protocol):
    """Idle unload (``engine.idle_unload_s``) as ``/health`` and ``/metrics`` read it."""

    @property
    def loaded(self) -> bool: ...
    @property
    def unloads(self) -> int: ...
    @property
    def reloads(self) -> int: ...
    @property
    def reload_seconds(self) -> float: ...


class AdmissionState(Protocol):
    """What admission exports: refusals and the wait a new request would see, per kind."""

    refused: dict[str, int]  # by kind: "interactive" | "bulk"
    promised: dict[str, int]  # admitted requests' first audio, by kind
    late: dict[str, int]  # ... of which later than the promise they were admitted on

    def estimate(self, interactive: bool) -> WaitEstimate: ...


class SpeechEngine(Protocol):
    """What the front ends need from the engine (the real one and the test fakes).

    Validation belongs to the engine: ``prepare`` refuses a bad request (an EngineError
    with a code and ``param``) and returns a :class:`Prepared` that ``synthesize`` runs,
    so a request is checked once and no front end repeats the rules.
    """

    sample_rate: int

    @property
    def preparing(self) -> list[dict[str, object]]: ...
    @property
    def provider(self) -> str: ...
    @property
    def residency(self) -> ModelState | None: ...
    @property
    def admission(self) -> AdmissionState | None: ...

    def voices(self) -> list[VoiceInfo]: ...
    def default_voice(self, lang: str | None = None) -> str: ...
    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice: ...
    def prepare(self, req: SynthesisRequest) -> Prepared: ...
    def prepare_phonemes(
        self, phonemes: str, voice: str | None, speed: float = 1.0
    ) -> Prepared: ...
    def phonemize_ids(self, text: str, lang: str) -> tuple[str, list[int]]: ...
    def synthesize(
        self,
        prep: Prepared,
        *,
        interactive: bool = False,
        admitted: bool = False,
        needed_at: Callable[[], float] | None = None,
    ) -> AsyncGenerator[np.ndarray, None]: ...
    def synthesize_timed(
        self, prep: Prepared, *, interactive: bool = False
    ) -> AsyncGenerator[TimedChunk, None]: ...
