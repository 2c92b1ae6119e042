"""OpenAI-style error envelope, API-key check and CORS for the HTTP front end.

Every failure leaves as ``{"error": {"message", "type", "param", "code"}}`` because
that is what the openai SDK and Open WebUI read; FastAPI-style ``detail`` bodies lose
the message. Validation errors must stay 4xx: the SDK retries 5xx twice.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from fastkokoro_wyoming.engine.errors import EngineError
from fastkokoro_wyoming.http_api.metrics import Metrics

_LOGGER = logging.getLogger(__name__)


# The audition page (page.py): static files with no data; the page asks for the key when
# a request it makes answers 401, so loading it must not need one.
PAGE_PATHS = frozenset({"/", "/static/{name}"})
# open whatever the settings: probes carry no key, and the page is how a person enters it
PUBLIC_PATHS = frozenset({"/health"}) | PAGE_PATHS
# Open too with ``http.public_catalog`` (the default): Open WebUI fetches these without its
# key, and they list only what any client could guess. Route templates, as aiohttp and the
# OpenAPI document name them, so ``/v1/models/{model_id}`` covers every id.
CATALOG_PATHS = frozenset(
    {"/v1/models", "/v1/models/{model_id}", "/v1/audio/models", "/v1/audio/voices", "/openapi.json"}
)
_HTTP_CODES: Mapping[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be read."),
    404: ("not_found", "No such route."),
    405: ("method_not_allowed", "Method not allowed on this route."),
    413: ("request_too_large", "The request body is too large."),
}
_CORS_HEADERS = "Authorization, Content-Type, Accept, OpenAI-Organization, OpenAI-Project"
# Engine error codes -> the codes OpenAI's API answers for the same refusal, so clients
# written against OpenAI (and our tests) see the same thing whichever layer refused.
OPENAI_CODES: Mapping[str, str] = {
    "text_too_long": "string_above_max_length",
    "invalid_speed": "invalid_value",
}


class ApiError(Exception):
    """A request the HTTP layer refuses before it reaches the engine.

    Raised from anywhere in a handler; ``error_middleware`` turns it into the OpenAI
    error body, so handlers never build error responses by hand.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = dict(headers or {})


def invalid(message: str, param: str | None, code: str = "invalid_value") -> ApiError:
    """400 invalid_request_error about one request field."""
    return ApiError(400, message, param=param, code=code)


def openai_code(code: str) -> str:
    """The error code OpenAI uses for an engine error code (unchanged if it has none)."""
    return OPENAI_CODES.get(code, code)


def error_type(status: int) -> str:
    """OpenAI's ``error.type``: the SDK tells client mistakes from server faults by it."""
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str, param: str | None, code: str | None) -> dict:
    """``{"error": {...}}`` as the openai SDK and Open WebUI read it."""
    return {"error": {"message": message, "type": error_type(status), "param": param, "code": code}}


def json_error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An OpenAI error body as a JSON response with ``status``."""
    return web.json_response(
        error_body(status, message, param, code), status=status, headers=headers
    )


def engine_error_response(exc: EngineError) -> web.Response:
    """Map an EngineError to its status; Busy gets a Retry-After the SDK honours."""
    headers = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return json_error(
        exc.status, exc.message, param=exc.param, code=openai_code(exc.code), headers=headers
    )


def mid_stream_error(err: Exception, metrics: Metrics) -> dict:
    """The error body for a failure after the headers went out (the stream then ends
    with it, or is cut): logged and counted here, once for every streaming route."""
    if isinstance(err, EngineError):
        _LOGGER.error("Synthesis failed mid-stream: %s", err.message)
        error = error_body(err.status, err.message, err.param, openai_code(err.code))
    else:
        _LOGGER.error("Synthesis failed mid-stream", exc_info=err)
        error = error_body(500, "Internal server error.", None, "internal_error")
    metrics.error(error["error"]["code"])
    return error


def error_middleware(metrics: Metrics | None) -> Middleware:
    """Turn every exception (and aiohttp's 404/405/413) into the OpenAI error shape."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            response = json_error(
                exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers
            )
            code = exc.code or str(exc.status)
        except EngineError as exc:
            if exc.status >= 500:
                # Busy is back-pressure, not a fault: the client retries after Retry-After.
                level = logging.WARNING if hasattr(exc, "retry_after") else logging.ERROR
                _LOGGER.log(level, "Engine error on %s: %s", request.path, exc.message)
            response = engine_error_response(exc)
            code = openai_code(exc.code)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            code, message = _HTTP_CODES.get(exc.status, (f"http_{exc.status}", exc.reason))
            if exc.status == 413:
                message = f"{message} {exc.text}" if exc.text else message
            headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
            response = json_error(exc.status, message, code=code, headers=headers)
        except Exception:
            _LOGGER.exception("Unhandled error on %s %s", request.method, request.path)
            response = json_error(500, "Internal server error.", code="internal_error")
            code = "internal_error"
        if metrics is not None:
            metrics.error(code)
        return response

    return middleware


def open_paths(public_catalog: bool) -> frozenset[str]:
    """The routes (templates) readable without the key when one is configured; the one
    rule ``auth_middleware`` enforces and ``openapi.py`` documents."""
    return PUBLIC_PATHS | CATALOG_PATHS if public_catalog else PUBLIC_PATHS


def _route(request: web.Request) -> str | None:
    """The matched route's template (``/v1/models/{model_id}``); None for an unknown route
    or a wrong method, which therefore need the key."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def auth_middleware(api_key: str | None, public: Collection[str] = PUBLIC_PATHS) -> Middleware:
    """Require ``Authorization: Bearer <api_key>`` on every route but ``public``
    (:func:`open_paths`).

    Unknown routes need the key too, so a client without it learns nothing about the
    routes; /health stays open for probes. ``openapi.py`` documents the same rule.
    """
    expected = api_key.encode() if api_key else b""
    public = frozenset(public)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected and _route(request) not in public:
            scheme, _, key = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                key.strip().encode(), expected
            ):
                raise ApiError(
                    401,
                    "Incorrect or missing API key. Send 'Authorization: Bearer <key>'.",
                    code="invalid_api_key",
                )
        return await handler(request)

    return middleware


def _allowed_origin(origins: Collection[str], origin: str | None) -> str | None:
    if not origin or not origins:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def cors_preflight_middleware(origins: Collection[str]) -> Middleware:
    """Answer browser preflights (OPTIONS + Access-Control-Request-Method) directly."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if (
            request.method != "OPTIONS"
            or "Access-Control-Request-Method" not in request.headers
            or not origins
        ):
            return await handler(request)
        if _allowed_origin(origins, request.headers.get("Origin")) is None:
            return json_error(403, "Origin not allowed.", code="origin_not_allowed")
        requested = request.headers.get("Access-Control-Request-Headers")
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                "Access-Control-Allow-Headers": requested or _CORS_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )

    return middleware


def cors_on_prepare(
    origins: Collection[str],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """Add CORS headers to every response, streamed ones included, before headers go out."""

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        allowed = _allowed_origin(origins, request.headers.get("Origin"))
        if allowed is None:
            return
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = "Content-Disposition, Retry-After"
        if allowed != "*":
            response.headers.add("Vary", "Origin")

    return on_prepare
