"""Plain data passed between the engine and its front ends."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 24_000
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # what Kokoro renders well; both front ends enforce it


@dataclass(frozen=True)
class SynthesisRequest:
    """What a front end asks for.

    ``voice`` is a voice name or a blend (``af_bella(2)+af_sky(1)``,
    ``af_bella:0.7+af_sky:0.3``); ``None`` picks the default voice of ``lang``
    (or the configured default). ``lang`` is any alias the language table knows;
    ``None`` takes the voice's own language. ``ssml``: ``text`` is an SSML document
    (engine/text/ssml.py), parsed and checked by the engine's one validation.
    """

    text: str
    voice: str | None = None
    lang: str | None = None
    speed: float = 1.0
    normalize: bool = True
    ssml: bool = False


@dataclass(frozen=True)
class VoiceInfo:
    """One installed voice, as both front ends list it."""

    name: str
    lang: str  # Kokoro's one-letter code: a b j z e f h i p
    locale: str  # BCP-47 style code HA shows: en-US, en-GB, ja-JP, ...
    gender: str  # "female" | "male"
