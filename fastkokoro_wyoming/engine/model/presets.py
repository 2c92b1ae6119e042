"""Voice presets (``engine.voices.presets``): a name for a voice or blend with its own speed,
volume and language.

Home Assistant picks a voice per pipeline from the Wyoming ``info`` catalog and sends no
speed, volume or blend weights, so whatever a user wants beyond a bare voice has to exist
on the server under a name. A preset is that name: it is listed in both catalogs and
accepted wherever a voice is. Its syntax is checked with the rest of the config
(:func:`validate_presets`); its voices, once they are loaded (:func:`check_presets`):
either way a mistake stops startup with one line naming the preset.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..errors import ConfigError, EngineError
from ..settings import PresetConfig
from ..text.languages import LanguageTable
from ..types import MAX_SPEED, MIN_SPEED

KEY = "engine.voices.presets"
# Names end up stored in HA pipelines and in HTTP clients: plain, and never blend syntax.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_DB = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*db\s*$", re.IGNORECASE)
MIN_DB, MAX_DB = -40.0, 20.0


@dataclass(frozen=True)
class Preset:
    """A checked preset: what it resolves to and what it changes."""

    name: str
    voice: str  # the voice or blend spec, as written
    speed: float | None  # None: the request's speed, else 1.0
    volume_db: float  # gain after loudness normalisation
    lang: str | None  # one-letter language code; None: the voice's


def parse_volume(text: str | None) -> float:
    """``"-3dB"`` / ``"+2 dB"`` (decibels) or ``"0.7"`` (a multiplier) -> decibels.
    Raises ValueError with the accepted forms."""
    if text is None or not str(text).strip():
        return 0.0
    text = str(text)
    m = _DB.match(text)
    if m:
        db = float(m[1])
    else:
        try:
            factor = float(text)
        except ValueError:
            raise ValueError(
                f"volume {text!r} is neither decibels ('-3dB') nor a multiplier ('0.7')"
            ) from None
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"volume multiplier {text!r} must be a number above 0")
        db = 20.0 * math.log10(factor)
    if not MIN_DB <= db <= MAX_DB:
        raise ValueError(f"volume {text!r} is {db:+.1f} dB; allowed {MIN_DB:g} to +{MAX_DB:g} dB")
    return db


def validate_presets(presets: Mapping[str, PresetConfig], voice_map: Mapping[str, str]) -> None:
    """What can be checked without the voices: names, speed, volume. ``voice_map``: the
    OpenAI names the HTTP API maps (http.voice_map); a preset must not hide one."""
    mapped = {k.lower() for k in voice_map}
    for name, preset in presets.items():
        where = f"{KEY}.{name}"
        if not _NAME.match(name):
            raise ConfigError(
                f"{where}: a preset name is letters, digits, '_', '-' or '.' (at most 64)"
            )
        if name.lower() in mapped:
            raise ConfigError(
                f"{where}: {name!r} is an OpenAI voice name the HTTP API maps "
                f"(http.voice_map); pick another name, or map it to the preset there"
            )
        if not preset.voice.strip():
            raise ConfigError(f"{where}.voice: must name a voice or a blend")
        if preset.speed is not None and not MIN_SPEED <= preset.speed <= MAX_SPEED:
            raise ConfigError(f"{where}.speed: must be {MIN_SPEED}-{MAX_SPEED}")
        try:
            parse_volume(preset.volume)
        except ValueError as err:
            raise ConfigError(f"{where}.volume: {err}") from None


def check_presets(
    presets: Mapping[str, PresetConfig],
    resolve: Callable[[str], tuple[str, str]],
    installed: Callable[[str], bool],
    languages: LanguageTable,
    allow_cross_language: bool,
) -> dict[str, Preset]:
    """Each preset against the loaded voices. ``resolve(spec) -> (spec, lang code)`` raises
    the store's UnknownVoice for a typo, whose message names the close matches."""
    out: dict[str, Preset] = {}
    for name, cfg in presets.items():
        where = f"{KEY}.{name}"
        if installed(name):
            raise ConfigError(f"{where}: {name!r} is an installed voice; name the preset otherwise")
        try:
            _, voice_lang = resolve(cfg.voice)
        except EngineError as err:
            raise ConfigError(f"{where}.voice: {err.message}") from None
        lang: str | None = None
        if cfg.language:
            try:
                lang = languages.resolve(cfg.language).code
            except EngineError as err:
                raise ConfigError(f"{where}.language: {err.message}") from None
            same = lang == voice_lang or {lang, voice_lang} == {"a", "b"}  # engine's rule
            if not same and not allow_cross_language:
                raise ConfigError(
                    f"{where}.language: {cfg.voice!r} speaks "
                    f"{languages.resolve(voice_lang).locale}, not "
                    f"{languages.resolve(lang).locale} (set engine.allow_cross_language)"
                )
        out[name] = Preset(name, cfg.voice.strip(), cfg.speed, parse_volume(cfg.volume), lang)
    return out
