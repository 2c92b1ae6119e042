"""What every HTTP handler shares: the engine interface it relies on and per-app state.

Kept apart from ``app.py`` so the route modules can read the app keys without importing
the module that registers them (no import cycle), and so the engine contract the HTTP
front end depends on is written down in one place.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from aiohttp import web

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.engine.serving.timing import TimedChunk
from fastkokoro_wyoming.engine.types import SynthesisRequest, VoiceInfo
from fastkokoro_wyoming.http_api.metrics import Metrics, ModelState


class SpeechEngine(Protocol):
    """What this front end needs from the engine (the real Engine and the test fake).

    Validation belongs to the engine: ``prepare`` refuses a bad request (an EngineError
    with a code and ``param``) and returns an opaque prepared job that ``synthesize``
    runs, so a request is checked once and the HTTP layer never duplicates the rules
    (text length, speed range, default voice) that the Wyoming front end also needs.
    """

    ready: bool
    residency: ModelState | None  # idle unload state (engine.idle_unload_s), or None

    def voices(self) -> list[VoiceInfo]: ...

    def default_voice(self, lang: str | None = None) -> str: ...

    def prepare(self, req: SynthesisRequest) -> object: ...

    def synthesize(self, prepared: object) -> AsyncGenerator[np.ndarray, None]: ...

    def synthesize_timed(self, prepared: object) -> AsyncGenerator[TimedChunk, None]: ...


@dataclass
class ApiState:
    """Per-app state; lives on the Application, never at module level.

    Several apps share one process in tests (and could in an embedding program), so the
    settings, metrics registry and the "instructions ignored" log-once flag are per app.
    """

    settings: HttpConfig
    metrics: Metrics
    voice_map: Mapping[str, str]
    instructions_logged: bool = False
    spec: dict = field(default_factory=dict)


ENGINE_KEY = web.AppKey("engine", SpeechEngine)
STATE_KEY = web.AppKey("openai_api_state", ApiState)
