"""OpenAI-compatible HTTP front end (``POST /v1/audio/speech`` and friends) on aiohttp.

``make_app`` wires the routes (``speech.py``, ``routes.py``) to one engine, one
:class:`~fastkokoro_wyoming.config.HttpConfig` and one metrics registry;
``HttpService`` runs it beside the Wyoming server in the daemon's event loop.
"""

from __future__ import annotations

import logging

from aiohttp import web

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.captioned import captioned_speech
from fastkokoro_wyoming.http_api.connections import GUARD_KEY, ConnectionGuard, GuardedSite
from fastkokoro_wyoming.http_api.errors import (
    auth_middleware,
    cors_on_prepare,
    cors_preflight_middleware,
    error_middleware,
    open_paths,
)
from fastkokoro_wyoming.http_api.metrics import Metrics
from fastkokoro_wyoming.http_api.openapi import build_openapi
from fastkokoro_wyoming.http_api.page import add_page_routes
from fastkokoro_wyoming.http_api.params import merge_voice_map
from fastkokoro_wyoming.http_api.phonemes import add_phoneme_routes
from fastkokoro_wyoming.http_api.routes import (
    get_model,
    health,
    list_audio_models,
    list_models,
    list_voices,
    metrics_text,
    openapi,
)
from fastkokoro_wyoming.http_api.speech import speech
from fastkokoro_wyoming.http_api.state import ENGINE_KEY, STATE_KEY, ApiState, SpeechEngine

_LOGGER = logging.getLogger(__name__)


def make_app(
    engine: SpeechEngine, settings: HttpConfig, metrics: Metrics | None = None
) -> web.Application:
    """Build the aiohttp application; serve it with ``start_http_server`` or a test server.

    Only the ``http`` config section comes in: the engine owns the default voice and the
    input limits, so both front ends apply the same rules.
    """
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch_model(lambda: engine.residency)
    metrics.watch_admission(lambda: engine.admission)
    origins = tuple(settings.cors_origins)
    guard = ConnectionGuard(settings, metrics.connection_cut)
    metrics.watch_connections(guard.limits)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            guard.track_requests,
            cors_preflight_middleware(origins),
            error_middleware(metrics),
            guard.read_body_in_time,
            auth_middleware(settings.api_key, open_paths(settings.public_catalog)),
        ],
    )
    app[GUARD_KEY] = guard
    app[ENGINE_KEY] = engine
    app[STATE_KEY] = ApiState(
        settings=settings,
        metrics=metrics,
        voice_map=merge_voice_map(settings.voice_map),
        spec=build_openapi(settings),
    )
    if origins:
        app.on_response_prepare.append(cors_on_prepare(origins))
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_post("/dev/captioned_speech", captioned_speech)  # word timestamps
    add_phoneme_routes(app)  # /dev/phonemize, /dev/generate_from_phonemes
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", get_model)
    app.router.add_get("/v1/audio/models", list_audio_models)
    app.router.add_get("/v1/audio/voices", list_voices)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/openapi.json", openapi)
    add_page_routes(app)  # GET /: the voice-audition page (static files)
    return app


class HttpService:
    """The HTTP front end as a start/stop service beside the Wyoming server in one loop.

    The daemon starts and stops both front ends the same way; this owns the aiohttp
    runner so shutdown drains streams in flight (bounded) instead of cutting them.
    """

    def __init__(
        self, app: web.Application, host: str, port: int, drain_timeout_s: float = 10.0
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.drain_timeout_s = drain_timeout_s
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and listen; a second call does nothing."""
        if self._runner is not None:
            return
        # handler_cancellation: a client that hangs up cancels its handler at once, which
        # closes the engine stream and aborts the model call in flight.
        runner = web.AppRunner(
            self.app, shutdown_timeout=self.drain_timeout_s, handler_cancellation=True
        )
        await runner.setup()
        try:
            await GuardedSite(runner, self.host, self.requested_port, self.app[GUARD_KEY]).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.info("OpenAI-compatible API listening on http://%s:%s", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening and let responses in flight finish (``http.drain_timeout_s``)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    @property
    def port(self) -> int:
        """The bound port (differs from the requested one when that was 0)."""
        if self._runner is None or not self._runner.addresses:
            return self.requested_port
        return int(self._runner.addresses[0][1])


async def start_http_server(
    engine: SpeechEngine, settings: HttpConfig, metrics: Metrics | None = None
) -> HttpService:
    """Build the app and start listening on ``settings.host``/``settings.port``."""
    service = HttpService(
        make_app(engine, settings, metrics), settings.host, settings.port, settings.drain_timeout_s
    )
    await service.start()
    return service
