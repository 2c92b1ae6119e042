"""What every HTTP handler shares: the engine (typed by engine/protocol.py) and per-app state.

Kept apart from ``app.py`` so the route modules can read the app keys without importing
the module that registers them (no import cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.engine.protocol import SpeechEngine
from fastkokoro_wyoming.http_api.metrics import Metrics


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
