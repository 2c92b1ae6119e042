"""Parse an OpenAI ``/v1/audio/speech`` body (plus Kokoro-FastAPI's extras) into a request.

Pure and synchronous so the rules can be read and tested in one place: every refusal
is an ApiError naming the field in ``param``. Unknown extra fields are ignored, as
clients put vendor options in ``extra_body``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from fastkokoro_wyoming.audio import FORMATS
from fastkokoro_wyoming.config import OPENAI_VOICE_MAP
from fastkokoro_wyoming.engine.types import MAX_SPEED, MIN_SPEED, SynthesisRequest
from fastkokoro_wyoming.engine.voices import rename_voices
from fastkokoro_wyoming.http_api.errors import ApiError, invalid

MODEL_IDS: tuple[str, ...] = (
    "kokoro",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "gpt-4o-mini-tts-2025-12-15",
)
STREAM_FORMATS: tuple[str, ...] = ("audio", "sse")
# Used when the settings object lacks the attribute (HttpConfig keeps them elsewhere).
DEFAULT_MAX_INPUT_CHARS = 4096
DEFAULT_FORMAT = "mp3"


def max_input_chars(settings: Any) -> int:
    return int(getattr(settings, "max_input_chars", None) or DEFAULT_MAX_INPUT_CHARS)


def default_format(settings: Any) -> str:
    return getattr(settings, "default_format", None) or DEFAULT_FORMAT


# OpenAI's built-in voices -> Kokoro voices: config's default table (http.voice_map).
DEFAULT_VOICE_MAP: Mapping[str, str] = MappingProxyType(dict(OPENAI_VOICE_MAP))



@dataclass(frozen=True)
class SpeechParams:
    """A validated speech request: what to synthesize and how to deliver it."""

    request: SynthesisRequest
    fmt: str
    stream_format: str
    stream: bool
    model: str
    instructions: str | None


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


def _voice(
    body: Mapping[str, Any], settings: Any, voice_map: Mapping[str, str], lang: str | None
) -> str | None:
    raw = body.get("voice")
    if isinstance(raw, Mapping):
        raw = raw.get("id")
        if not isinstance(raw, str):
            raise invalid("'voice.id' must be a string.", "voice", "invalid_type")
    elif raw is not None and not isinstance(raw, str):
        raise invalid(
            "'voice' must be a string or an object with an 'id'.", "voice", "invalid_type"
        )
    if raw is None or not raw.strip():
        # With a language but no voice, let the engine pick that language's voice:
        # the configured default may speak another language.
        raw = None if lang else getattr(settings, "default_voice", None)
    return map_voice(raw, voice_map) if raw else None


def parse_speech_body(body: Any, settings: Any, voice_map: Mapping[str, str]) -> SpeechParams:
    """Validate the JSON body; raise ApiError (400, param = the field) on the first problem."""
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
    if not text.strip():
        raise invalid("'input' is empty.", "input", "empty_text")
    limit = max_input_chars(settings)
    if len(text) > limit:
        raise invalid(
            f"'input' is {len(text)} characters; the maximum is {limit}.",
            "input",
            "string_above_max_length",
        )

    fmt = _typed(body, "response_format", str, "a string") or default_format(settings)
    if fmt not in FORMATS:
        raise invalid(f"'response_format' must be one of: {', '.join(FORMATS)}.", "response_format")
    stream_format = _typed(body, "stream_format", str, "a string") or "audio"
    if stream_format not in STREAM_FORMATS:
        raise invalid("'stream_format' must be 'audio' or 'sse'.", "stream_format")

    speed = _typed(body, "speed", (int, float), "a number")
    speed = 1.0 if speed is None else float(speed)
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise invalid(f"'speed' must be between {MIN_SPEED} and {MAX_SPEED}.", "speed")

    stream = _typed(body, "stream", bool, "true or false")
    instructions = _typed(body, "instructions", str, "a string")
    lang = _typed(body, "lang_code", str, "a string") or _typed(body, "lang", str, "a string")
    options = _typed(body, "normalization_options", Mapping, "an object") or {}
    normalize = _typed(
        options, "normalize", bool, "true or false", "normalization_options.normalize"
    )

    request = SynthesisRequest(
        text=text,
        voice=_voice(body, settings, voice_map, lang),
        lang=lang or None,
        speed=speed,
        normalize=True if normalize is None else normalize,
    )
    return SpeechParams(
        request=request,
        fmt=fmt,
        stream_format=stream_format,
        stream=True if stream is None else stream,
        model=model,
        instructions=instructions or None,
    )
