"""The component schemas of ``/openapi.json`` (http_api/openapi.py): the request and
response bodies, with the limits the handlers enforce (speed, volume, formats, models)
taken from the same constants."""

from __future__ import annotations

from fastkokoro_wyoming.audio import FORMATS
from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.engine.types import MAX_SPEED, MAX_VOLUME, MIN_SPEED
from fastkokoro_wyoming.http_api.params import MODEL_IDS, STREAM_FORMATS

REF = "#/components/schemas/"
_REF = REF


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


_SSML = (
    "Kokoro-FastAPI's flag: `input` is an SSML document (docs/ssml.md); malformed SSML "
    'is a 400 naming line and column. `input_format: "ssml"` says the same.'
)


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
            # default 1.0, or the preset's speed when `voice` is a preset
            "speed": {"type": "number", "minimum": MIN_SPEED, "maximum": MAX_SPEED},
            # Kokoro-FastAPI's: after loudness normalisation, under the -1 dBFS limiter
            "volume_multiplier": {"type": "number", "minimum": 0, "maximum": MAX_VOLUME},
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
            "ssml": {"type": "boolean", "default": False, "description": _SSML},
            "input_format": {"type": "string", "enum": ["text", "ssml"], "default": "text"},
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


def component_schemas(settings: HttpConfig) -> dict:
    """``components.schemas``: the request and response bodies the paths refer to."""
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
                                    **{
                                        k: {"type": "string"}
                                        for k in ("id", "name", "language", "lang_code", "gender")
                                    },
                                    "preset": {"type": "object"},  # voice, speed, volume_db
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
