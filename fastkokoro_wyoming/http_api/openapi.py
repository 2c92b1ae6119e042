"""OpenAPI 3.1 description of the HTTP front end, served at ``/openapi.json``.

Kept as plain data so the limits it states (speed range, formats, models) come from
the same constants and settings the handlers enforce. The ``input`` length limit is the
engine's setting (``engine.limits.max_input_chars``), not this layer's, so the schema
describes it rather than pinning a number that a configuration could make false.

Each operation says whether it needs the API key (``security``), following the rule
``errors.auth_middleware`` enforces: with ``http.api_key`` set every route but the
open ones (``/health``, and the catalogs with ``http.public_catalog``) needs
``Authorization: Bearer``; without one, none does.
"""

from __future__ import annotations

from typing import Any

from fastkokoro_wyoming.audio import CONTENT_TYPES
from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.errors import open_paths
from fastkokoro_wyoming.http_api.openapi_schemas import REF as _REF
from fastkokoro_wyoming.http_api.openapi_schemas import component_schemas
from fastkokoro_wyoming.http_api.phonemes import openapi_paths, openapi_schemas


def _json(schema: str, description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF + schema}}},
    }


def _errors(*statuses: int) -> dict:
    text = {
        400: "Invalid request; `error.param` names the field.",
        401: "Missing or wrong API key.",
        404: "Unknown model or route.",
        413: "Request body too large.",
        500: "Internal error.",
        503: "Busy; see `Retry-After`.",
    }
    return {str(s): _json("Error", text[s]) for s in statuses}


def _sse_description() -> str:
    return (
        "Events `speech.audio.delta` (`audio`: base64 bytes of the response_format) "
        "then one `speech.audio.done` with `usage`. With `timestamps: true`, a "
        "`speech.audio.timestamps` event (`timestamps`: WordTimestamp list) follows the "
        "delta whose audio finished those words."
    )


def build_openapi(settings: HttpConfig) -> dict:
    """The whole document for this server's settings."""
    audio: dict[str, Any] = {
        ctype: {"schema": {"type": "string", "format": "binary"}}
        for ctype in dict.fromkeys(CONTENT_TYPES.values())
    }
    audio["text/event-stream"] = {  # OpenAPI 3.1 tools read this as one event
        "schema": {
            "type": "object",
            "description": _sse_description(),
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
        }
    }
    spec: dict = {
        "openapi": "3.1.0",
        "info": {
            "title": "fastkokoro-wyoming OpenAI-compatible speech API",
            "version": "1",
            "description": "Kokoro TTS behind OpenAI's /v1/audio/speech.",
        },
        "paths": {
            "/v1/audio/speech": {
                "post": {
                    "summary": "Synthesize speech (streamed unless stream=false)",
                    "operationId": "createSpeech",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"$ref": _REF + "SpeechRequest"}}
                        },
                    },
                    "responses": {
                        "200": {"description": "Audio, or SSE events", "content": audio},
                        **_errors(400, 401, 413, 500, 503),
                    },
                }
            },
            "/dev/captioned_speech": {
                "post": {
                    "summary": "Speech with word timestamps (Kokoro-FastAPI's route)",
                    "operationId": "createCaptionedSpeech",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": _REF + "CaptionedSpeechRequest"}
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "One CaptionedSpeech (stream=false), or NDJSON lines",
                            "content": {
                                "application/json": {"schema": {"$ref": _REF + "CaptionedSpeech"}},
                                "application/x-ndjson": {
                                    "schema": {"$ref": _REF + "CaptionedSpeech"}
                                },
                            },
                        },
                        **_errors(400, 401, 413, 500, 503),
                    },
                }
            },
            "/v1/models": {
                "get": {
                    "summary": "List model ids",
                    "operationId": "listModels",
                    "responses": {"200": _json("ModelList", "Models"), **_errors(401)},
                }
            },
            "/v1/models/{model_id}": {
                "get": {
                    "summary": "One model",
                    "operationId": "getModel",
                    "parameters": [
                        {
                            "name": "model_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": _json("Model", "Model"), **_errors(401, 404)},
                }
            },
            "/v1/audio/models": {
                "get": {
                    "summary": "Speech model ids (Open WebUI)",
                    "operationId": "listAudioModels",
                    "responses": {"200": _json("AudioModels", "Models"), **_errors(401)},
                }
            },
            "/v1/audio/voices": {
                "get": {
                    "summary": "Installed voices",
                    "operationId": "listVoices",
                    "parameters": [
                        {
                            "name": "legacy",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "enum": ["true", "false", "1", "0", "yes", "no", ""],
                            },
                            "description": "true: a list of names only",
                        }
                    ],
                    "responses": {"200": _json("Voices", "Voices"), **_errors(400, 401)},
                }
            },
            "/health": {
                "get": {
                    "summary": "Readiness (no auth)",
                    "operationId": "health",
                    "responses": {
                        "200": _json("Health", "Serving (maybe still preparing)"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "operationId": "metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "operationId": "openapi",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        **_errors(401),
                    },
                }
            },
        },
        "components": {"schemas": component_schemas(settings)},
    }
    spec["paths"].update(openapi_paths(audio))  # /dev/phonemize, /dev/generate_from_phonemes
    spec["components"]["schemas"].update(openapi_schemas())
    _add_security(spec, bool(settings.api_key), open_paths(settings.public_catalog))
    return spec


def _add_security(spec: dict, key_required: bool, public: frozenset[str]) -> None:
    """Mark each operation: bearer where ``auth_middleware`` demands the key, ``[]`` where
    it does not (every route when no key is configured, the open paths always)."""
    if key_required:
        spec["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        spec["security"] = [{"bearer": []}]
    for path, operations in spec["paths"].items():
        protected = key_required and path not in public
        for operation in operations.values():
            operation["security"] = [{"bearer": []}] if protected else []
            if path in public:  # never refused for the key, whatever the settings
                operation["responses"].pop("401", None)
