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

from fastkokoro_wyoming.audio import CONTENT_TYPES, FORMATS
from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.engine.types import MAX_SPEED, MIN_SPEED
from fastkokoro_wyoming.http_api.errors import open_paths
from fastkokoro_wyoming.http_api.params import MODEL_IDS, STREAM_FORMATS

_REF = "#/components/schemas/"


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


def _nullable(schema: dict) -> dict:
    """Optional fields may be sent as null (clients often do); null means "default"."""
    out = dict(schema)
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    if "oneOf" in out:
        out["oneOf"] = [*out["oneOf"], {"type": "null"}]
    elif "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _speech_request(default_format: str) -> dict:
    body = _speech_body(default_format)
    body["properties"] = {
        name: prop if name == "input" else _nullable(prop)
        for name, prop in body["properties"].items()
    }
    return body


def _speech_body(default_format: str) -> dict:
    return {
        "type": "object",
        "required": ["input"],
        "properties": {
            "model": {"type": "string", "enum": list(MODEL_IDS), "default": "kokoro"},
            "input": {
                "type": "string",
                "minLength": 1,
                "description": "Text to speak: at most `engine.limits.max_input_chars` "
                "characters (4096 by default, OpenAI's limit); longer input is refused with "
                "400 `string_above_max_length`.",
            },
            "voice": {
                "description": "Kokoro voice, OpenAI voice name (mapped), or a blend such as "
                "`af_bella(2)+af_sky(1)` or `af_bella:0.7+af_sky:0.3`.",
                "oneOf": [
                    {"type": "string"},
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}},
                    },
                ],
            },
            "response_format": {"type": "string", "enum": list(FORMATS), "default": default_format},
            "speed": {"type": "number", "minimum": MIN_SPEED, "maximum": MAX_SPEED, "default": 1.0},
            "stream_format": {"type": "string", "enum": list(STREAM_FORMATS), "default": "audio"},
            "instructions": {"type": "string", "description": "Accepted and ignored."},
            "lang_code": {"type": "string", "description": "Kokoro language (a, b, j, ...)."},
            "lang": {"type": "string", "description": "Alias of `lang_code`."},
            "stream": {
                "type": "boolean",
                "default": True,
                "description": "false: one body with Content-Length.",
            },
            "normalization_options": {
                "type": "object",
                "properties": {"normalize": {"type": ["boolean", "null"], "default": True}},
            },
            "timestamps": {
                "type": "boolean",
                "default": False,
                "description": "Extension, with stream_format `sse` only (400 otherwise): "
                "`speech.audio.timestamps` events with the words each delta finished.",
            },
        },
        "additionalProperties": True,
    }


def _captioned_request(default_format: str) -> dict:
    """Kokoro-FastAPI's CaptionedSpeechRequest: the speech body plus return_timestamps."""
    body = _speech_request(default_format)
    props = dict(body["properties"])
    props.pop("timestamps")
    props["stream_format"] = {**props["stream_format"], "description": "Ignored here."}
    props["stream"] = {
        "type": ["boolean", "null"],
        "default": True,
        "description": "true: NDJSON (`application/x-ndjson`), one CaptionedSpeech per "
        "line with that line's audio and the words it finished; false: one JSON object.",
    }
    props["return_timestamps"] = {"type": ["boolean", "null"], "default": True}
    return {**body, "properties": props}


def _schemas(settings: HttpConfig) -> dict:
    return {
        "SpeechRequest": _speech_request(settings.default_format),
        "CaptionedSpeechRequest": _captioned_request(settings.default_format),
        "WordTimestamp": {
            "type": "object",
            "required": ["word", "start_time", "end_time"],
            "properties": {
                "word": {"type": "string", "description": "As written in `input`."},
                "start_time": {"type": "number", "description": "Seconds into the audio."},
                "end_time": {"type": "number"},
            },
        },
        "CaptionedSpeech": {
            "type": "object",
            "required": ["audio", "audio_format", "timestamps"],
            "properties": {
                "audio": {"type": "string", "contentEncoding": "base64"},
                "audio_format": {"type": "string", "description": "Content type, audio/mpeg"},
                "timestamps": {
                    "type": ["array", "null"],
                    "items": {"$ref": _REF + "WordTimestamp"},
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "properties": {
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                        "param": {"type": ["string", "null"]},
                        "code": {"type": ["string", "null"]},
                    },
                }
            },
        },
        "Model": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": {"type": "string"},
            },
        },
        "ModelList": {
            "type": "object",
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": _REF + "Model"}},
            },
        },
        "AudioModels": {
            "type": "object",
            "properties": {
                "models": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"id": {"type": "string"}}},
                }
            },
        },
        "Voices": {
            "type": "object",
            "properties": {
                "voices": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"type": "string"},
                            {
                                "type": "object",
                                "properties": {
                                    k: {"type": "string"}
                                    for k in ("id", "name", "language", "lang_code", "gender")
                                },
                            },
                        ]
                    },
                }
            },
        },
        "Health": {
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["ok"]},
                "model": {
                    "type": "string",
                    "enum": ["loaded", "unloaded"],
                    "description": "unloaded: closed after engine.idle_unload_s without "
                    "requests; the next request reloads it (still healthy)",
                },
                "preparing": {
                    "type": "array",
                    "description": "One-time work under way in the background (first start: "
                    "the windowed decoder's graphs, a voice's norm priors; until then that "
                    "voice's replies are decoded whole). task; done of total; eta_s: seconds",
                    "items": {"type": "object", "properties": _PREPARING},
                },
            },
        },
    }


_PREPARING = {"task": {"type": "string"}, "done": {"type": "integer"},
              "total": {"type": "integer"}, "eta_s": {"type": "number"}}  # fmt: skip


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
        "components": {"schemas": _schemas(settings)},
    }
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
