"""OpenAI-compatible HTTP front end (``POST /v1/audio/speech`` and friends) on aiohttp.

Every check runs, and the first audio chunk is made, before any header is sent, so
a refused request is always a proper JSON error. Audio then streams through one
StreamEncoder per response, encoded in worker threads to keep the loop free.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from aiohttp import web

from fastkokoro_wyoming.audio import StreamEncoder
from fastkokoro_wyoming.engine.errors import EngineError
from fastkokoro_wyoming.engine.types import SynthesisRequest, VoiceInfo
from fastkokoro_wyoming.http_api.errors import (
    ApiError,
    auth_middleware,
    cors_on_prepare,
    cors_preflight_middleware,
    error_body,
    error_middleware,
    invalid,
)
from fastkokoro_wyoming.http_api.metrics import Metrics
from fastkokoro_wyoming.http_api.openapi import build_openapi
from fastkokoro_wyoming.http_api.params import (
    MODEL_IDS,
    SpeechParams,
    merge_voice_map,
    parse_speech_body,
)

_LOGGER = logging.getLogger(__name__)

MODEL_CREATED = 1686935002  # fixed, like OpenAI's tts-1 entry; clients only display it
OWNER = "fastkokoro-wyoming"
DEFAULT_MAX_BODY_BYTES = 1_048_576


class SpeechEngine(Protocol):
    """What this front end needs from the engine (the real Engine and the test fake)."""

    ready: bool

    def voices(self) -> list[VoiceInfo]: ...

    def default_voice(self, lang: str | None = None) -> str: ...

    def prepare(self, req: SynthesisRequest) -> object: ...

    def synthesize(self, req: SynthesisRequest) -> AsyncGenerator[np.ndarray, None]: ...


@dataclass
class ApiState:
    """Per-app state; lives on the Application, never at module level."""

    settings: Any
    metrics: Metrics
    voice_map: Mapping[str, str]
    instructions_logged: bool = False
    spec: dict = field(default_factory=dict)


ENGINE_KEY = web.AppKey("engine", SpeechEngine)
STATE_KEY = web.AppKey("openai_api_state", ApiState)


def make_app(
    engine: SpeechEngine, settings: Any, metrics: Metrics | None = None
) -> web.Application:
    """Build the aiohttp application; serve it with ``start_http_server`` or a test server."""
    metrics = metrics if metrics is not None else Metrics()
    origins = tuple(getattr(settings, "cors_origins", ()) or ())
    app = web.Application(
        client_max_size=getattr(settings, "max_body_bytes", None) or DEFAULT_MAX_BODY_BYTES,
        middlewares=[
            cors_preflight_middleware(origins),
            error_middleware(metrics),
            auth_middleware(getattr(settings, "api_key", None)),
        ],
    )
    app[ENGINE_KEY] = engine
    app[STATE_KEY] = ApiState(
        settings=settings,
        metrics=metrics,
        voice_map=merge_voice_map(getattr(settings, "voice_map", None)),
        spec=build_openapi(settings),
    )
    if origins:
        app.on_response_prepare.append(cors_on_prepare(origins))
    app.router.add_post("/v1/audio/speech", speech)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model_id}", get_model)
    app.router.add_get("/v1/audio/models", list_audio_models)
    app.router.add_get("/v1/audio/voices", list_voices)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_text)
    app.router.add_get("/openapi.json", openapi)
    return app


# --- speech -------------------------------------------------------------------------


async def speech(request: web.Request) -> web.StreamResponse:
    """Validate, make the first chunk, then stream (or buffer) the encoded audio."""
    engine = request.app[ENGINE_KEY]
    state = request.app[STATE_KEY]
    received = time.perf_counter()
    if not engine.ready:
        raise ApiError(
            503, "The model is still loading.", code="model_loading", headers={"Retry-After": "5"}
        )
    params = parse_speech_body(await _read_json(request), state.settings, state.voice_map)
    if params.instructions and not state.instructions_logged:
        state.instructions_logged = True
        _LOGGER.info("Ignoring 'instructions': Kokoro has no prompt-controlled style")
    engine.prepare(params.request)
    state.metrics.observe_request(params.fmt)

    chunks = engine.synthesize(params.request)
    async with contextlib.aclosing(chunks):  # closing the generator stops synthesis on disconnect
        first = await anext(chunks, None)  # an EngineError here is still a JSON error
        encoder = await asyncio.to_thread(StreamEncoder, params.fmt)
        encoded = _encode(first, chunks, encoder)
        if not params.stream and params.stream_format == "audio":
            async with contextlib.aclosing(encoded):
                body = b"".join([part async for part in encoded])
            state.metrics.observe_ttfa(time.perf_counter() - received)
            _observe_rtf(state.metrics, received, encoder)
            return web.Response(body=body, headers=_audio_headers(params, encoder))
        state.metrics.stream_started()
        try:
            return await _stream(request, params, encoded, encoder, received)
        finally:
            state.metrics.stream_finished()


async def _encode(
    first: np.ndarray | None, chunks: AsyncIterator[np.ndarray], encoder: StreamEncoder
) -> AsyncIterator[bytes]:
    chunk = first
    while chunk is not None:
        data = await asyncio.to_thread(encoder.encode, chunk)
        if data:
            yield data
        chunk = await anext(chunks, None)
    tail = await asyncio.to_thread(encoder.flush)
    if tail:
        yield tail


def _audio_headers(params: SpeechParams, encoder: StreamEncoder) -> dict[str, str]:
    return {
        "Content-Type": encoder.content_type,
        "Content-Disposition": f"attachment; filename=speech.{params.fmt}",
        "X-Accel-Buffering": "no",
        "Cache-Control": "no-cache",
    }


_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def _stream(
    request: web.Request,
    params: SpeechParams,
    encoded: AsyncIterator[bytes],
    encoder: StreamEncoder,
    received: float,
) -> web.StreamResponse:
    """Send encoded audio as it comes: raw chunked bytes, or SSE delta events."""
    metrics = request.app[STATE_KEY].metrics
    sse = params.stream_format == "sse"
    response = web.StreamResponse(headers=_SSE_HEADERS if sse else _audio_headers(params, encoder))
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent_first = False
    try:
        async with contextlib.aclosing(encoded):
            async for data in encoded:
                await response.write(_sse(_delta(data)) if sse else data)
                if not sent_first:
                    sent_first = True
                    metrics.observe_ttfa(time.perf_counter() - received)
        if sse:
            await response.write(_sse(_done(params, encoder)))
        await response.write_eof()
    except ConnectionResetError:
        _LOGGER.info("Client went away mid-stream; synthesis stopped")
        return response
    except Exception as err:  # after the headers: end the stream honestly, never hang
        if isinstance(err, EngineError):
            _LOGGER.error("Synthesis failed mid-stream: %s", err.message)
            error = error_body(err.status, err.message, err.param, err.code)
        else:
            _LOGGER.exception("Synthesis failed mid-stream")
            error = error_body(500, "Internal server error.", None, "internal_error")
        metrics.error(error["error"]["code"])
        if not sse:
            # Headers are gone: the only honest signal left is a truncated chunked body.
            _abort(request)
            return response
        failure = {"type": "error", **error}
        with contextlib.suppress(ConnectionResetError):
            await response.write(_sse(failure))
            await response.write_eof()
        return response
    _observe_rtf(metrics, received, encoder)
    return response


def _delta(data: bytes) -> dict:
    return {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}


def _done(params: SpeechParams, encoder: StreamEncoder) -> dict:
    """Final SSE event. Usage is an estimate: ~4 characters a token, 20 ms an audio token."""
    input_tokens = math.ceil(len(params.request.text) / 4)
    output_tokens = math.ceil(encoder.duration * 50)
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    return {"type": "speech.audio.done", "usage": usage}


def _sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _observe_rtf(metrics: Metrics, started: float, encoder: StreamEncoder) -> None:
    if encoder.duration > 0:
        metrics.observe_rtf((time.perf_counter() - started) / encoder.duration)


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()  # raises 413 past client_max_size
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400, f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from None


# --- catalog, health, metrics, spec ---------------------------------------------------


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [_model(m) for m in MODEL_IDS]})


async def get_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    if model_id not in MODEL_IDS:
        raise ApiError(
            404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
        )
    return web.json_response(_model(model_id))


async def list_audio_models(request: web.Request) -> web.Response:
    return web.json_response({"models": [{"id": m} for m in MODEL_IDS]})


_BOOLS = ("1", "true", "yes", "0", "false", "no", "")


async def list_voices(request: web.Request) -> web.Response:
    """Open WebUI reads ``voices[].id``/``name``; ``?legacy=true`` gives bare names."""
    voices = request.app[ENGINE_KEY].voices()
    legacy = request.query.get("legacy", "false").lower()
    if legacy not in _BOOLS:
        raise invalid("'legacy' must be true or false.", "legacy", "invalid_type")
    if legacy in ("1", "true", "yes"):
        return web.json_response({"voices": [v.name for v in voices]})
    return web.json_response(
        {
            "voices": [
                {
                    "id": v.name,
                    "name": v.name,
                    "language": v.locale,
                    "lang_code": v.lang,
                    "gender": v.gender,
                }
                for v in voices
            ]
        }
    )


async def health(request: web.Request) -> web.Response:
    if request.app[ENGINE_KEY].ready:
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "loading"}, status=503)


async def metrics_text(request: web.Request) -> web.Response:
    provider = str(getattr(request.app[ENGINE_KEY], "provider", "unknown"))
    text = request.app[STATE_KEY].metrics.render(provider)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE_KEY].spec)


# --- serving -------------------------------------------------------------------------


class HttpService:
    """The HTTP front end as a start/stop service beside the Wyoming server in one loop."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if self._runner is not None:
            return
        # handler_cancellation: a client that hangs up cancels its handler at once, which
        # closes the engine stream and aborts the model call in flight.
        runner = web.AppRunner(self.app, shutdown_timeout=5.0, handler_cancellation=True)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.requested_port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.info("OpenAI-compatible API listening on http://%s:%s", self.host, self.port)

    async def stop(self) -> None:
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
    engine: SpeechEngine, settings: Any, metrics: Metrics | None = None
) -> HttpService:
    """Build the app and start listening on ``settings.host``/``settings.port``."""
    service = HttpService(make_app(engine, settings, metrics), settings.host, settings.port)
    await service.start()
    return service
