"""Errors the engine raises before (or while) it makes audio.

Every error carries a machine-readable ``code`` and the request field it is about
(``param``), so each front end can map it without parsing messages: the OpenAI API
turns it into ``{"error": {...}}`` with ``status``, Wyoming into an ``error`` event.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a request the engine refuses or could not finish."""

    code = "engine_error"
    param: str | None = None
    status = 500  # HTTP status a front end should use

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if param is not None:
            self.param = param


class InvalidRequest(EngineError):
    """A request the engine refuses as written (HTTP 400, Wyoming ``error``)."""

    code = "invalid_request"
    status = 400


class UnknownVoice(InvalidRequest):
    """The voice, or a part of the blend, is not installed."""

    code = "unknown_voice"
    param = "voice"


class UnknownLanguage(InvalidRequest):
    """The language code or alias is not one Kokoro speaks."""

    code = "unknown_language"
    param = "lang"


class LanguageMismatch(InvalidRequest):
    """The voice speaks another language than the one asked for."""

    code = "language_mismatch"
    param = "voice"


class EmptyText(InvalidRequest):
    """Nothing to say: empty input, or only symbols the model cannot speak."""

    code = "empty_text"
    param = "input"


class InvalidPhonemes(InvalidRequest):
    """Phonemes (inline ``[word](/…/)`` or a phoneme request) with a symbol the model lacks."""

    code = "invalid_phonemes"
    param = "input"


class TextTooLong(InvalidRequest):
    """Input past ``engine.limits.max_input_chars``."""

    code = "text_too_long"
    param = "input"
    status = 400


class InvalidSpeed(InvalidRequest):
    """Speed outside what Kokoro renders well (types.MIN_SPEED..MAX_SPEED)."""

    code = "invalid_speed"
    param = "speed"


class LanguageUnavailable(EngineError):
    """The language is known but its optional G2P packages are not installed."""

    code = "language_unavailable"
    param = "lang"
    status = 400


class Busy(EngineError):
    """The scheduler's queue is full; try again shortly."""

    code = "busy"
    status = 503
    retry_after = 1


class SynthesisTimeout(EngineError):
    """The request ran past ``engine.limits.max_request_seconds``."""

    code = "synthesis_timeout"
    status = 504


class SynthesisFailed(EngineError):
    """The model call itself failed (a bug or a broken model, not the request)."""

    code = "synthesis_failed"
    status = 500


class ConfigError(Exception):
    """A startup problem: bad config, missing file or provider. One line, names the key."""
