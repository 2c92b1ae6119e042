"""Voice presets (engine.voices.presets): config syntax, startup checks, resolution.

No model: a VoiceStore over small fake style tables. ~0.3 s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastkokoro_wyoming.config import PresetConfig, load_config
from fastkokoro_wyoming.engine.errors import ConfigError
from fastkokoro_wyoming.engine.model.presets import check_presets, parse_volume
from fastkokoro_wyoming.engine.model.voices import VoiceStore, parse_blend
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.wyoming_api.handler import describe_voice


def store(presets: dict[str, PresetConfig], cross: bool = False) -> VoiceStore:
    rng = np.random.default_rng(0)
    names = ("af_heart", "af_sky", "am_adam", "bf_emma", "ff_siwis")
    tables = {n: rng.standard_normal((510, 256)).astype(np.float32) for n in names}
    voices = VoiceStore(tables, LanguageTable())

    def resolve(spec: str) -> tuple[str, str]:
        v = voices.resolve(spec)
        return v.name, v.lang

    voices.add_presets(check_presets(presets, resolve, voices.__contains__, LanguageTable(), cross))
    return voices


def test_volume_syntax() -> None:
    assert parse_volume("-3dB") == -3.0
    assert parse_volume("+2 dB") == 2.0
    assert parse_volume(None) == 0.0
    assert parse_volume("0.5") == pytest.approx(-6.0206, abs=1e-3)
    assert parse_volume("2") == pytest.approx(6.0206, abs=1e-3)
    for bad in ("loud", "0", "-1", "-60dB", "3 dBFS"):
        with pytest.raises(ValueError):
            parse_volume(bad)


def test_yaml_mapping_env_list_and_shorthand(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "engine:\n  voices:\n    presets:\n"
        "      grandma: {voice: af_heart, speed: 0.85, volume: -3dB}\n"
        "      plain: am_adam\n"
    )
    presets = load_config(path, environ={}).engine.voices.presets
    assert presets["grandma"] == PresetConfig("af_heart", 0.85, "-3dB", None)
    assert presets["plain"] == PresetConfig("am_adam")
    env = {"FASTKOKORO_ENGINE_VOICES_PRESETS": json.dumps([{"name": "duo", "voice": "a,b"}])}
    assert load_config(environ=env).engine.voices.presets == {"duo": PresetConfig("a,b")}


@pytest.mark.parametrize(
    ("presets", "message"),
    [
        ({"g": {"voice": "af_heart", "sped": 1}}, "engine.voices.presets.g.sped: unknown key"),
        ({"g": {"speed": 1.0}}, "engine.voices.presets.g.voice: required"),
        ({"g": {"voice": "af_heart", "speed": 9}}, "engine.voices.presets.g.speed: must be"),
        ({"g": {"voice": "af_heart", "volume": "loud"}}, "engine.voices.presets.g.volume:"),
        ({"a+b": {"voice": "af_heart"}}, "engine.voices.presets.a+b: a preset name is"),
        ({"alloy": {"voice": "af_heart"}}, "an OpenAI voice name"),
    ],
)
def test_config_refuses_with_one_line_naming_the_preset(presets: dict, message: str) -> None:
    env = {"FASTKOKORO_ENGINE_VOICES_PRESETS": json.dumps(presets)}
    with pytest.raises(ConfigError) as err:
        load_config(environ=env)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_typos_against_the_voices_name_the_preset_and_the_fix() -> None:
    with pytest.raises(ConfigError) as err:
        store({"grandma": PresetConfig("af_hart", 0.8)})
    text = str(err.value)
    assert text.startswith("engine.voices.presets.grandma.voice: unknown voice 'af_hart'")
    assert "did you mean af_heart" in text
    with pytest.raises(ConfigError, match="duo.voice: unknown voice 'af_skyy' in"):
        store({"duo": PresetConfig("af_heart:0.7,af_skyy:0.3")})
    with pytest.raises(ConfigError, match="presets.af_sky: 'af_sky' is an installed voice"):
        store({"af_sky": PresetConfig("af_heart")})
    with pytest.raises(ConfigError, match="x.language: 'ff_siwis' speaks fr-FR, not en-US"):
        store({"x": PresetConfig("ff_siwis", language="en")})
    assert store({"x": PresetConfig("ff_siwis", language="en")}, cross=True).resolve("x").lang


def test_a_preset_resolves_lists_and_keeps_its_voices_table() -> None:
    voices = store(
        {
            "grandma": PresetConfig("af_heart", 0.85, "+2dB"),
            "duo": PresetConfig("af_heart:0.7,af_sky:0.3", language="en-GB"),
        }
    )
    g = voices.resolve("grandma")
    assert (g.name, g.blend, g.speed, g.volume_db, g.lang) == ("grandma", "af_heart", 0.85, 2, "a")
    assert np.array_equal(g.styles, voices.resolve("af_heart").styles)
    duo = voices.resolve("duo")
    assert (duo.blend, duo.lang, duo.speed) == ("af_heart:0.7,af_sky:0.3", "b", None)
    mix = 0.7 * voices.resolve("af_heart").styles + 0.3 * voices.resolve("af_sky").styles
    assert np.allclose(duo.styles, mix, atol=1e-5)
    assert [p.name for p in parse_blend(duo.blend)] == ["af_heart", "af_sky"]
    infos = {v.name: v for v in voices.infos}
    assert (infos["grandma"].preset, infos["grandma"].locale) == ("af_heart", "en-US")
    assert (infos["duo"].locale, infos["duo"].lang) == ("en-GB", "b")
    assert describe_voice(infos["grandma"]) == "grandma (preset: af_heart, 0.85x, en-US)"
    assert infos["af_heart"].preset is None
