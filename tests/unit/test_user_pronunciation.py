"""Inline pronunciations ``[word](/phonemes/)``, the lexicon (engine.lexicon) and the
phoneme entry points of the engine. No model: the engine is built from its parts and
``prepare``/``phonemize`` never run it. ~4 s (misaki and espeak load once)."""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path

import numpy as np
import pytest

from fastkokoro_wyoming.config import EngineConfig
from fastkokoro_wyoming.engine.engine import Engine
from fastkokoro_wyoming.engine.errors import ConfigError, EmptyText, InvalidPhonemes
from fastkokoro_wyoming.engine.model.voices import VoiceStore
from fastkokoro_wyoming.engine.serving.plan import SegmentPlanner
from fastkokoro_wyoming.engine.settings import SegmentationConfig
from fastkokoro_wyoming.engine.text import inline, lexicon
from fastkokoro_wyoming.engine.text.cleanup import clean
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.lexicon import Lexicon
from fastkokoro_wyoming.engine.text.vocab import Vocab
from fastkokoro_wyoming.engine.text.words import label_sentence
from fastkokoro_wyoming.engine.types import SynthesisRequest

VOCAB = Vocab.load()
TABLE = LanguageTable()


@functools.cache
def g2p() -> G2P:
    return G2P(TABLE)


def engine(g: G2P | None = None) -> Engine:
    rng = np.random.default_rng(0)
    styles = {
        n: rng.standard_normal((510, 256)).astype(np.float32) for n in ("af_heart", "ef_dora")
    }
    return Engine(
        EngineConfig(),
        voices=VoiceStore(styles, TABLE),
        vocab=VOCAB,
        g2p=g or g2p(),
        session=None,  # type: ignore[arg-type]  # nothing here runs the model
        scheduler=None,  # type: ignore[arg-type]
        languages=TABLE,
    )


# --- inline spans -----------------------------------------------------------------------


def test_protect_and_restore_round_trip():
    text = "a [x](/ə/) b [y z](/ˈaɪ/) \ue123c"
    hidden, spans = inline.protect(text)
    assert "[" not in hidden and len(spans) == 2
    assert inline.restore(hidden, spans) == text.replace("\ue123", " ")
    assert inline.plain("a [x](/ə/) b [y z](/ˈaɪ/).") == "a x b y z."


def test_a_url_link_is_read_as_its_text_and_an_inline_span_is_kept():
    assert clean("[Kokoro](/kˈOkəɹO/) and [Kokoro](https://x.io/k)") == (
        "[Kokoro](/kˈOkəɹO/) and Kokoro"
    )


def test_english_hands_the_span_to_misaki():
    assert g2p().phonemize("I use [Kokoro](/kˈOkəɹO/) daily.", "a") == "ˌI jˈuz kˈOkəɹO dˈAli."


def test_other_languages_take_the_token_path():
    got = g2p().phonemize("Hola [Kokoro](/kokˈoɾo/), amigo.", "es")
    assert got == "ˈola kokˈoɾo, amˈiɣo."


def test_an_unknown_symbol_is_refused_naming_it():
    with pytest.raises(InvalidPhonemes) as err:
        engine().prepare(SynthesisRequest("Say [this](/ðɪs$/) now."))
    assert "'$'" in err.value.message and "'this'" in err.value.message
    assert "POST /dev/phonemize" in err.value.message  # the route's real method
    assert err.value.status == 400 and err.value.param == "input"


def test_word_timestamps_name_the_written_word():
    text = "I use [Kokoro](/kˈOkəɹO/) daily."
    normalized, phonemes, tokens = g2p().phonemize_tokens(text, "a")
    words = label_sentence(text, normalized, phonemes, tokens)
    assert words.texts == ("I", "use", "Kokoro", "daily")


# --- the lexicon -------------------------------------------------------------------------


def write(path: Path, body: str) -> Path:
    path.write_text(body, "utf-8")
    return path


def test_lexicon_entries_are_whole_words_any_case_and_win_over_the_reading_rules(tmp_path):
    path = write(tmp_path / "lex.yaml", "en-US:\n  HVAC: ˈAʧvæk\n  km: kˈAˈɛm\n")
    lex = Lexicon(path, VOCAB, TABLE)
    assert lex.apply("the hvac, HVACs and 5 km", "a") == (
        "the [hvac](/ˈAʧvæk/), HVACs and 5 [km](/kˈAˈɛm/)"
    )
    assert lex.apply("the hvac", "b") == "the hvac"  # en-GB has no entries
    g = G2P(TABLE, lex)
    assert (
        g.phonemize("Check the HVAC.", "a") == "ʧˈɛk ði ˈAʧvæk."
    )  # misaki still reads "the" before a vowel


def test_lexicon_keys_are_folded_like_the_text(tmp_path):
    path = write(tmp_path / "lex.yaml", "en:\n  Zoë’s: zˈOiz\n  Home Assistant: hˈOm əsˈɪstᵊnt\n")
    lex = Lexicon(path, VOCAB, TABLE)
    assert lex.apply(clean("Zoë’s home assistant"), "a") == (
        "[Zoë's](/zˈOiz/) [home assistant](/hˈOm əsˈɪstᵊnt/)"
    )


def test_lexicon_for_chinese_matches_inside_words(tmp_path):
    lex = Lexicon(write(tmp_path / "lex.yaml", "zh:\n  小米: ʂjau↓mi↓\n"), VOCAB, TABLE)
    assert lex.apply("我的小米手机", "z") == "我的[小米](/ʂjau↓mi↓/)手机"


@pytest.mark.parametrize(
    "body,message",
    [
        (
            "en-US:\n  HVAC: ˈeɪtʃ$\n",
            "en-US: 'HVAC': '$' (U+0024 DOLLAR SIGN) is not a Kokoro phoneme",
        ),
        ("klingon:\n  a: b\n", "'klingon' is not a language"),
        ("en-US:\n  HVAC: ''\n", "'HVAC': the phonemes must be a non-empty string"),
        ("en-US: [a, b]\n", "en-US: must map words to phonemes"),
        ("- a\n", "must map languages"),
        ("en-US: {a: b\n", "is not valid YAML"),
    ],
)
def test_a_bad_lexicon_is_one_line_naming_the_entry(tmp_path, body, message):
    with pytest.raises(ConfigError) as err:
        Lexicon(write(tmp_path / "lex.yaml", body), VOCAB, TABLE)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_lexicon_file_refuses_to_start(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Lexicon(tmp_path / "nope.yaml", VOCAB, TABLE)


def test_the_lexicon_reloads_when_its_file_changes_and_keeps_the_last_good_one(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(lexicon, "CHECK_INTERVAL_S", 0.0)
    path = write(tmp_path / "lex.yaml", "en-US:\n  HVAC: ˈAʧvæk\n")
    lex = Lexicon(path, VOCAB, TABLE)
    write(path, "en-US:\n  HVAC: hˈivæk\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert lex.apply("HVAC", "a") == "[HVAC](/hˈivæk/)" and lex.reloads == 1
    write(path, "en-US:\n  HVAC: b$d\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert lex.apply("HVAC", "a") == "[HVAC](/hˈivæk/)"  # the bad edit is not taken
    assert "Lexicon not reloaded" in caplog.text


def test_the_lexicon_checks_the_file_at_most_once_a_second(tmp_path):
    path = write(tmp_path / "lex.yaml", "en-US:\n  HVAC: ˈAʧvæk\n")
    lex = Lexicon(path, VOCAB, TABLE)
    write(path, "en-US:\n  HVAC: hˈivæk\n")
    assert lex.apply("HVAC", "a") == "[HVAC](/ˈAʧvæk/)"  # checked < 1 s ago: not yet


# --- phoneme entry points -----------------------------------------------------------------


def test_phonemize_ids_gives_the_model_ids():
    phonemes, ids = engine().phonemize_ids("Hello [Kokoro](/kˈOkəɹO/)!", "en-US")
    assert phonemes == "həlˈO kˈOkəɹO!" and ids == VOCAB.encode(phonemes)
    with pytest.raises(EmptyText):
        engine().phonemize_ids("  ", "a")
    with pytest.raises(InvalidPhonemes, match="'#'"):
        engine().phonemize_ids("[a](/#/)", "a")


def test_prepare_phonemes_checks_every_symbol_and_plans_without_g2p():
    eng = engine()
    with pytest.raises(InvalidPhonemes, match="'x'|'X'") as err:
        eng.prepare_phonemes("həlˈO X", "af_heart")
    assert err.value.param == "phonemes"
    with pytest.raises(EmptyText):
        eng.prepare_phonemes(" ", "af_heart")
    prep = eng.prepare_phonemes("həlˈO wˈɜɹld. ˈɪts mˈi!", None, 1.2)
    assert prep.phonemes and prep.voice.name == "af_heart" and prep.speed == 1.2
    planner = SegmentPlanner(None, VOCAB, SegmentationConfig(strategy="sentence"), 510)  # type: ignore[arg-type]
    segments = [s.phonemes for s in planner.plan(prep)]  # type: ignore[union-attr]
    assert segments == ["həlˈO wˈɜɹld.", "ˈɪts mˈi!"]
