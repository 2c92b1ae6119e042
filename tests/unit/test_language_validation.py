"""Language aliases, request validation, missing extras and per-language reading rules.

No model here: the engine is built from its parts with random voice tables, and
``prepare`` (validation) never touches the model.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastkokoro_wyoming.config import EngineConfig
from fastkokoro_wyoming.engine.engine import Engine
from fastkokoro_wyoming.engine.errors import (
    LanguageMismatch,
    LanguageUnavailable,
    UnknownLanguage,
)
from fastkokoro_wyoming.engine.model.voices import VoiceStore
from fastkokoro_wyoming.engine.text import g2p as g2p_module
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.reading import (
    kanji_number,
    normalize_chinese,
    normalize_espeak,
    normalize_japanese,
)
from fastkokoro_wyoming.engine.text.vocab import Vocab
from fastkokoro_wyoming.engine.types import SynthesisRequest

VALID = "a/en-US, b/en-GB, j/ja-JP, z/zh-CN, e/es-ES, f/fr-FR, h/hi-IN, i/it-IT, p/pt-BR"
VOICES = {
    "a": "af_heart",
    "b": "bf_emma",
    "j": "jf_alpha",
    "z": "zf_xiaobei",
    "e": "ef_dora",
    "f": "ff_siwis",
    "h": "hf_alpha",
    "i": "if_sara",
    "p": "pf_dora",
}

# --- the language table ---------------------------------------------------------------


@pytest.mark.parametrize(
    "alias,code",
    [
        # the list, each in a mixed case and with _ where it has a -
        *[
            (a, c)
            for c, aliases in {
                "a": ("A", "EN-us", "en_US", "En", "American", "AMERICAN"),
                "b": ("B", "en-GB", "EN_gb", "British", "bRiTiSh"),
                "j": ("J", "JA", "Ja-Jp", "ja_JP"),
                "z": ("Z", "ZH", "zh-CN", "Zh_Cn", "Mandarin", "MANDARIN"),
                "e": ("E", "Es", "ES-es", "es_ES"),
                "f": ("F", "FR", "fr-FR", "Fr_fR"),
                "h": ("H", "Hi", "HI-in", "hi_IN"),
                "i": ("I", "IT", "It-It", "it_IT"),
                "p": ("P", "PT", "pt-BR", "Pt_Br"),
            }.items()
            for a in aliases
        ],
        (" es ", "e"),  # surrounding spaces
    ],
)
def test_aliases_are_case_insensitive_with_dash_or_underscore(alias, code):
    assert LanguageTable().resolve(alias).code == code


@pytest.mark.parametrize("alias", ["klingon", "en-AU", "x", "", "pt-pt-br", None])
def test_unknown_language_lists_every_valid_one(alias):
    with pytest.raises(UnknownLanguage) as err:
        LanguageTable().resolve(alias)
    assert err.value.message == f"unknown language {alias!r}; valid languages: {VALID}"
    assert (err.value.code, err.value.param, err.value.status) == ("unknown_language", "lang", 400)


def test_every_language_has_a_locale_and_its_prefix_voice():
    table = LanguageTable()
    assert [lg.code for lg in table.languages] == list("abjzefhip")
    for code, voice in VOICES.items():
        assert table.for_voice(voice).code == code
        assert table.for_voice(voice.replace("f_", "m_", 1)).code == code  # male voices too
        assert table.resolve(table.resolve(code).locale).code == code


@pytest.mark.parametrize("name", ["custom", "x", "af", "a_heart", "ax_heart", "zz", ""])
def test_names_without_a_kokoro_prefix_have_no_language(name):
    assert LanguageTable().for_voice(name) is None


# --- request validation in Engine.prepare ---------------------------------------------


def engine(**cfg: object) -> Engine:
    rng = np.random.default_rng(0)
    names = [*VOICES.values(), "am_adam", "ef_other"]
    table = LanguageTable()
    styles = {n: rng.standard_normal((510, 256)).astype(np.float32) for n in names}
    return Engine(
        EngineConfig(**cfg),  # type: ignore[arg-type]
        voices=VoiceStore(styles, table),
        vocab=Vocab.load(),
        g2p=G2P(table),
        session=None,  # type: ignore[arg-type]  # prepare() never runs the model
        scheduler=None,  # type: ignore[arg-type]
        languages=table,
    )


@pytest.mark.parametrize("code,voice", VOICES.items())
def test_lang_is_optional_and_taken_from_the_voice(code, voice):
    assert engine().prepare(SynthesisRequest("Hola 1.", voice=voice)).lang == code


@pytest.mark.parametrize("lang", ["JA", "ja_jp", "Japanese"])
def test_lang_without_voice_picks_a_voice_of_that_language(lang):
    prep = engine().prepare(SynthesisRequest("こんにちは", lang=lang))
    assert (prep.lang, prep.voice.name) == ("j", "jf_alpha")


def test_matching_lang_in_any_spelling_is_accepted():
    prep = engine().prepare(SynthesisRequest("Hola", voice="ef_dora", lang="Es_eS"))
    assert prep.lang == "e"


def test_american_and_british_voices_read_either_accent():
    assert engine().prepare(SynthesisRequest("Hi", voice="bf_emma", lang="en-US")).lang == "a"
    assert engine().prepare(SynthesisRequest("Hi", voice="af_heart", lang="british")).lang == "b"


def test_voice_of_another_language_is_an_error_naming_both():
    with pytest.raises(LanguageMismatch) as err:
        engine().prepare(SynthesisRequest("Bonjour", voice="ef_dora", lang="FR"))
    msg = err.value.message
    assert "'ef_dora'" in msg and "es-ES" in msg and "fr-FR" in msg, msg
    assert "ff_siwis" in msg  # a voice that does speak it
    assert "allow_cross_language" in msg  # and how to allow it anyway
    assert (err.value.code, err.value.param, err.value.status) == (
        "language_mismatch",
        "voice",
        400,
    )


def test_blend_takes_its_first_voice_language():
    with pytest.raises(LanguageMismatch) as err:
        engine().prepare(SynthesisRequest("Ciao", voice="ef_dora+if_sara", lang="it"))
    assert "es-ES" in err.value.message and "it-IT" in err.value.message


def test_cross_language_voice_allowed_by_config():
    prep = engine(allow_cross_language=True).prepare(
        SynthesisRequest("Bonjour", voice="ef_dora", lang="fr-fr")
    )
    assert (prep.lang, prep.voice.name) == ("f", "ef_dora")


def test_unknown_lang_in_a_request_lists_valid_ones():
    with pytest.raises(UnknownLanguage) as err:
        engine().prepare(SynthesisRequest("Hallo", voice="af_heart", lang="de-DE"))
    assert VALID in err.value.message


# --- G2P: lazy, any alias, and a clear error when a language's packages are missing ----


def test_g2p_loads_a_language_on_first_use_through_any_alias():
    g = G2P(LanguageTable())
    assert g.loaded() == []
    assert g.phonemize("Hola.", "ES_es") == "ˈola."
    assert g.loaded() == ["e"]
    with pytest.raises(UnknownLanguage):
        g.phonemize("Hallo", "de")


def test_g2p_is_safe_from_many_threads_while_it_loads():
    texts = [("Hola, 25 amigos.", "e"), ("Ciao, 25 amici.", "i"), ("Olá, 25 amigos.", "p")] * 8
    g = G2P(LanguageTable())
    with ThreadPoolExecutor(8) as pool:  # the first calls race to load each language
        got = list(pool.map(lambda tl: g.phonemize(*tl), texts))
    assert got == [g.phonemize(*tl) for tl in texts]
    assert g.loaded() == ["e", "i", "p"]


@pytest.mark.parametrize(
    "lang,missing,extra",
    [("zh", "jieba", "zh"), ("ja", "unidic_lite", "ja"), ("Mandarin", "pypinyin", "zh")],
)
def test_missing_extra_names_the_extra(monkeypatch, lang, missing, extra):
    def builder() -> None:
        raise ModuleNotFoundError(f"No module named {missing!r}", name=missing)

    monkeypatch.setattr(g2p_module, "_mandarin" if extra == "zh" else "_japanese", builder)
    g = G2P(LanguageTable())
    for _ in range(2):  # not cached: once the extra is installed, the next request loads it
        with pytest.raises(LanguageUnavailable) as err:
            g.phonemize("你好", lang)
    msg = err.value.message
    assert f"pip install 'fastkokoro-wyoming[{extra}]'" in msg, msg
    assert missing in msg
    assert (err.value.code, err.value.param) == ("language_unavailable", "lang")
    assert g.loaded() == []


@pytest.mark.parametrize("lang,module", [("zh", "jieba"), ("ja", "unidic_lite")])
def test_missing_extra_from_the_real_builders(monkeypatch, lang, module):
    # None in sys.modules makes `import module` fail as if it were not installed
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(LanguageUnavailable) as err:
        G2P(LanguageTable()).phonemize("1", lang)
    assert module in err.value.message and f"[{lang}]" in err.value.message


def test_missing_default_package_says_reinstall(monkeypatch):
    def builder(code: str) -> None:
        raise ModuleNotFoundError("No module named 'espeakng_loader'", name="espeakng_loader")

    monkeypatch.setattr(g2p_module, "_espeak", builder)
    with pytest.raises(LanguageUnavailable) as err:
        G2P(LanguageTable()).phonemize("Ciao", "it")
    assert "Italian" in err.value.message and "espeakng_loader" in err.value.message
    assert "reinstall fastkokoro-wyoming" in err.value.message


# --- reading rules before G2P ---------------------------------------------------------


@pytest.mark.parametrize(
    "code,text,expected",
    [
        # grouping and decimal marks: the language's convention, and unambiguous foreign ones
        ("e", "1.250.000 y 3,5", "1250000 y 3 coma 5"),
        ("e", "1,250,000 y 1.5 y 1.500", "1250000 y 1 coma 5 y 1500"),
        ("e", "3,05 y 3,14159 y 1.250,50", "3 coma 0 5 y 3 coma 1 4 1 5 9 y 1250 coma 50"),
        ("e", "versión 1.2.3, lista 1,2,3", "versión 1.2.3, lista 1,2,3"),
        ("f", "3,5 et 1\u202f250\u00a0000", "3 virgule 5 et 1250000"),
        ("i", "1.250.000 e 3,5", "1250000 e 3 virgola 5"),
        ("p", "1.500,50 e 3,5", "1500 vírgula 50 e 3 vírgula 5"),
        ("h", "1,25,000 और 3.5 और 3,5", "125000 और 3 दशमलव 5 और 3,5"),
        ("h", "२५ लोग। ठीक॥", "25 लोग. ठीक."),
        # currency before or after the number, singular and plural
        ("e", "$5, 1 €, 25€ y US$3", "5 dólares, 1 euro, 25 euros y 3 dólares"),
        ("p", "R$ 25 e R$1", "25 reais e 1 real"),
        ("f", "25 € et 1 $", "25 euros et 1 dollar"),
        ("h", "₹500 और Rs. 1", "500 रुपये और 1 रुपया"),
        # clock times
        ("e", "a las 8:30 o 8:00", "a las 8 y 30 o 8 en punto"),
        ("f", "à 8h30, 1 h 15 ou 20:00", "à 8 heures 30, une heure 15 ou 20 heures"),
        ("i", "alle 8:30", "alle 8 e 30"),
        ("p", "às 8h30 ou 1:00", "às 8 horas e 30 ou uma hora"),
        ("h", "8:30 बजे और 9:00", "8 बजकर 30 मिनट और 9 बजे"),
        ("e", "12:30:45 y 3:2", "12:30:45 y 3:2"),  # not clock times we read
        # minus and degrees; ranges and codes keep their hyphen
        ("e", "-5 °C, 30° y 5-10", "menos 5 grados Celsius, 30 grados y 5-10"),
        ("f", "−3°C et COVID-19", "moins 3 degrés Celsius et COVID-19"),
        ("p", "40°F", "40 graus Fahrenheit"),
        ("h", "-5 और 25°C", "माइनस 5 और 25 डिग्री सेल्सियस"),
    ],
)
def test_espeak_languages_reading_rules(code, text, expected):
    assert normalize_espeak(text, code) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("¥1,500和1,250,000人", "1500元和1250000人"),
        ("要$5还是€3？", "要5美元还是3欧元？"),
        ("８：０５出发，８:30到，9:00走", "8点零五分出发，8点30分到，9点走"),
        ("２０２４年，５０％，3．5", "2024年，50%，3.5"),
        ("气温25°C", "气温25摄氏度"),
        ("你好，世界。", "你好，世界。"),  # prose punctuation untouched
    ],
)
def test_chinese_reading_rules(text, expected):
    assert normalize_chinese(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2024年3月5日", "二千二十四年三月五日"),
        ("¥1,500と$5", "千五百円と五ドル"),
        ("3.5キロ、0.25", "三点五キロ、ゼロ点二五"),
        ("8:30に、-5°C、50%", "八時三十分に、マイナス五度、五十パーセント"),
        ("１２３４５６７８９０円", "十二億三千四百五十六万七千八百九十円"),
        ("電話は090です", "電話は〇九〇です"),
    ],
)
def test_japanese_reading_rules(text, expected):
    assert normalize_japanese(text) == expected


@pytest.mark.parametrize(
    "digits,kanji",
    [
        ("0", "ゼロ"),
        ("10", "十"),
        ("11", "十一"),
        ("100", "百"),
        ("1000", "千"),
        ("10000", "一万"),
        ("10000000", "千万"),
        ("20001", "二万一"),
        ("100000000", "一億"),
        ("007", "〇〇七"),
        ("1" * 21, "一" * 21),
    ],
)
def test_kanji_numbers(digits, kanji):
    assert kanji_number(digits) == kanji
