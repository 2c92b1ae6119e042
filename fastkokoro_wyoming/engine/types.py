"""Plain data passed between the engine and its front ends."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 24_000
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # what Kokoro renders well; both front ends enforce it
MAX_VOLUME = 8.0  # volume multiplier (HTTP volume_multiplier): 0 (silence) to +18 dB


@dataclass(frozen=True)
class SynthesisRequest:
    """What a front end asks for.

    ``voice`` is a voice name or a blend (``af_bella(2)+af_sky(1)``,
    ``af_bella:0.7+af_sky:0.3``); ``None`` picks the default voice of ``lang``
    (or the configured default). ``lang`` is any alias the language table knows;
    ``None`` takes the voice's own language. ``ssml``: ``text`` is an SSML document
    (engine/text/ssml.py), parsed and checked by the engine's one validation. ``speed``
    ``None``: the preset's speed when ``voice`` is a preset, else 1.0. ``volume``: a
    multiplier applied after the loudness normalisation (Kokoro-FastAPI's
    ``volume_multiplier``), under the same limiter.
    """

    text: str
    voice: str | None = None
    lang: str | None = None
    speed: float | None = None
    normalize: bool = True
    ssml: bool = False
    volume: float = 1.0


@dataclass(frozen=True)
class VoiceInfo:
    """One installed voice, as both front ends list it."""

    name: str
    lang: str  # Kokoro's one-letter code: a b j z e f h i p
    locale: str  # BCP-47 style code HA shows: en-US, en-GB, ja-JP, ...
    gender: str  # "female" | "male"
    preset: str | None = None  # a preset (engine.voices.presets): the voice or blend it is
    speed: float | None = None  # a preset's speed
    volume_db: float = 0.0  # a preset's volume
