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
    code = "invalid_request"
    status = 400


class UnknownVoice(InvalidRequest):
    code = "unknown_voice"
    param = "voice"


class UnknownLanguage(InvalidRequest):
    code = "unknown_language"
    param = "lang"


class LanguageMismatch(InvalidRequest):
    code = "language_mismatch"
    param = "voice"


class EmptyText(InvalidRequest):
    code = "empty_text"
    param = "input"


class TextTooLong(InvalidRequest):
    code = "text_too_long"
    param = "input"
    status = 400


class InvalidSpeed(InvalidRequest):
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
    code = "synthesis_failed"
    status = 500


class ConfigError(Exception):
    """A startup problem: bad config, missing file or provider. One line, names the key."""
