"""Parse an OpenAI ``/v1/audio/speech`` body (plus Kokoro-FastAPI's extras) into a request.

Pure and synchronous so the rules can be read and tested in one place: every refusal
is an ApiError naming the field in ``param``. Unknown extra fields are ignored, as
clients put vendor options in ``extra_body``.

Only the JSON shape is checked here (types, enums, the OpenAI-only fields). What a
request may ask of the engine (text length, speed range, which voice when none is
named) is the engine's rule, checked once in ``engine.prepare`` for both front ends.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from fastkokoro_wyoming.audio import FORMATS
from fastkokoro_wyoming.config import OPENAI_VOICE_MAP
from fastkokoro_wyoming.engine.model.voices import rename_voices
from fastkokoro_wyoming.engine.types import SynthesisRequest
from fastkokoro_wyoming.http_api.errors import ApiError, invalid

MODEL_IDS: tuple[str, ...] = (
    "kokoro",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "gpt-4o-mini-tts-2025-12-15",
)
STREAM_FORMATS: tuple[str, ...] = ("audio", "sse")

# OpenAI's built-in voices -> Kokoro voices: config's default table (http.voice_map).
DEFAULT_VOICE_MAP: Mapping[str, str] = MappingProxyType(dict(OPENAI_VOICE_MAP))


@dataclass(frozen=True)
class SpeechParams:
    """A parsed speech request: what to ask the engine for and how to deliver it.

    Kept apart from SynthesisRequest because the delivery fields (format, streaming,
    SSE) are HTTP concerns the engine never sees.
    """

    request: SynthesisRequest
    fmt: str
    stream_format: str
    stream: bool
    model: str
    instructions: str | None
    timestamps: bool = False  # extension: word timings as SSE events (stream_format sse)


def merge_voice_map(overrides: Mapping[str, str] | None) -> Mapping[str, str]:
    """Defaults overlaid with the configured map; keys compared case-insensitively."""
    merged = {k.lower(): v for k, v in DEFAULT_VOICE_MAP.items()}
    merged.update({k.lower(): v for k, v in (overrides or {}).items()})
    return MappingProxyType(merged)


def map_voice(voice: str, voice_map: Mapping[str, str]) -> str:
    """Map OpenAI names in each part of a blend (the engine's one blend reading)."""
    return rename_voices(voice, voice_map)


def _typed(
    body: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    label: str,
    param: str | None = None,
) -> Any:
    value = body.get(key)
    if value is None:
        return None
    # bool is an int subclass; true/false is never a valid number here.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise invalid(f"'{param or key}' must be {label}.", param or key, "invalid_type")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _voice(body: Mapping[str, Any], voice_map: Mapping[str, str]) -> str | None:
    """The named voice (OpenAI names mapped), or None: the engine then picks the default
    voice of the requested language, or the configured default."""
    raw = body.get("voice")
    if isinstance(raw, Mapping):
        raw = raw.get("id")
        if not isinstance(raw, str):
            raise invalid("'voice.id' must be a string.", "voice", "invalid_type")
    elif raw is not None and not isinstance(raw, str):
        raise invalid(
            "'voice' must be a string or an object with an 'id'.", "voice", "invalid_type"
        )
    return map_voice(raw, voice_map) if raw and raw.strip() else None


def _speed(body: Mapping[str, Any]) -> float | None:
    """The speed asked for, or None: then a preset's speed applies (else 1.0)."""
    speed = _typed(body, "speed", (int, float), "a number")
    if speed is None:
        return None
    try:
        return float(speed)
    except OverflowError:  # a JSON integer past float range: the engine refuses infinity
        return math.inf if speed > 0 else -math.inf


INPUT_FORMATS: tuple[str, ...] = ("text", "ssml")


def _is_ssml(body: Mapping[str, Any]) -> bool:
    """Whether ``input`` is an SSML document: Kokoro-FastAPI's ``"ssml": true``, or
    ``"input_format": "ssml"``; both given must agree."""
    flag = _typed(body, "ssml", bool, "true or false")
    fmt = _typed(body, "input_format", str, "a string")
    if fmt is not None and fmt not in INPUT_FORMATS:
        raise invalid("'input_format' must be 'text' or 'ssml'.", "input_format")
    if flag is not None and fmt is not None and flag != (fmt == "ssml"):
        raise invalid("'ssml' and 'input_format' disagree; send one of them.", "input_format")
    return bool(flag) or fmt == "ssml"


def _finite(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:  # a huge JSON integer: the engine refuses it by range
        return math.inf


def parse_speech_body(body: Any, default_format: str, voice_map: Mapping[str, str]) -> SpeechParams:
    """Validate the JSON shape and build the request; raises ApiError (param = the field)
    on the first problem. ``default_format`` is ``http.default_format``; ``voice_map``
    comes from :func:`merge_voice_map`."""
    if not isinstance(body, Mapping):
        raise invalid("The request body must be a JSON object.", None, "invalid_type")

    model = _typed(body, "model", str, "a string") or "kokoro"
    if model not in MODEL_IDS:
        raise ApiError(
            400,
            f"The model '{model}' does not exist. Use one of: {', '.join(MODEL_IDS)}.",
            param="model",
            code="model_not_found",
        )

    text = body.get("input")
    if text is None:
        raise invalid("'input' is required.", "input", "missing_required_parameter")
    if not isinstance(text, str):
        raise invalid("'input' must be a string.", "input", "invalid_type")

    fmt = _typed(body, "response_format", str, "a string") or default_format
    if fmt not in FORMATS:
        raise invalid(f"'response_format' must be one of: {', '.join(FORMATS)}.", "response_format")
    stream_format = _typed(body, "stream_format", str, "a string") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise invalid("'stream_format' must be 'audio' or 'sse'.", "stream_format")

    speed = _speed(body)
    volume = _typed(body, "volume_multiplier", (int, float), "a number")
    stream = _typed(body, "stream", bool, "true or false")
    instructions = _typed(body, "instructions", str, "a string")
    timestamps = _typed(body, "timestamps", bool, "true or false")
    lang = _typed(body, "lang_code", str, "a string") or _typed(body, "lang", str, "a string")
    options = _typed(body, "normalization_options", Mapping, "an object") or {}
    normalize = _typed(
        options, "normalize", bool, "true or false", "normalization_options.normalize"
    )

    request = SynthesisRequest(
        text=text,
        ssml=_is_ssml(body),
        voice=_voice(body, voice_map),
        lang=lang or None,
        speed=speed,
        normalize=True if normalize is None else normalize,
        volume=1.0 if volume is None else _finite(volume),
    )
    return SpeechParams(
        request=request,
        fmt=fmt,
        stream_format=stream_format,
        stream=True if stream is None else stream,
        model=model,
        instructions=instructions or None,
        timestamps=bool(timestamps),
    )
