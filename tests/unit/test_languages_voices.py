import numpy as np
import pytest

from fastkokoro_wyoming.engine.errors import ConfigError, UnknownLanguage, UnknownVoice
from fastkokoro_wyoming.engine.model.voices import VoiceStore, load_style_tables
from fastkokoro_wyoming.engine.text.languages import LanguageTable


def store(names=("af_heart", "af_bella", "af_sky", "bm_george", "jf_alpha")):
    rng = np.random.default_rng(0)
    return VoiceStore(
        {n: rng.standard_normal((510, 256)).astype(np.float32) for n in names}, LanguageTable()
    )


@pytest.mark.parametrize(
    "alias,code",
    [
        ("a", "a"),
        ("EN-us", "a"),
        ("en_US", "a"),
        ("American", "a"),
        ("en", "a"),
        ("en-gb", "b"),
        ("British", "b"),
        ("ja", "j"),
        ("JA_JP", "j"),
        ("zh-CN", "z"),
        ("Mandarin", "z"),
        ("es", "e"),
        ("fr-FR", "f"),
        ("hi", "h"),
        ("it-it", "i"),
        ("pt-BR", "p"),
    ],
)
def test_language_aliases(alias, code):
    assert LanguageTable().resolve(alias).code == code


def test_unknown_language_lists_valid_ones():
    with pytest.raises(UnknownLanguage) as err:
        LanguageTable().resolve("klingon")
    assert "en-US" in err.value.message and "pt-BR" in err.value.message


def test_voice_language_from_prefix():
    s = store()
    assert {i.name: (i.lang, i.locale, i.gender) for i in s.infos}["bm_george"] == (
        "b",
        "en-GB",
        "male",
    )


def test_blends_are_normalised_both_syntaxes():
    s = store()
    a, b = s.resolve("af_bella").styles, s.resolve("af_sky").styles
    expect = (2 * a + 1 * b) / 3
    np.testing.assert_allclose(
        s.resolve("af_bella(2)+af_sky(1)").styles, expect, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        s.resolve("af_bella:0.7+af_sky:0.3").styles, 0.7 * a + 0.3 * b, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(
        s.resolve("af_bella + af_sky").styles, (a + b) / 2, rtol=1e-4, atol=1e-6
    )
    assert s.resolve("af_bella(2)+bm_george").lang == "a"


@pytest.mark.parametrize(
    "spec,named",
    [
        ("af_nope", "af_nope"),
        ("af_bella+af_nope", "af_nope"),
        ("af_bella++af_sky", "''"),
        ("af_bella(x)+af_sky", "af_bella(x)"),
        ("af_bella:0+af_sky", "af_bella"),
    ],
)
def test_bad_blend_part_is_named(spec, named):
    with pytest.raises(UnknownVoice) as err:
        store().resolve(spec)
    assert named in err.value.message


def test_style_row_by_length_is_clamped():
    v = store().resolve("af_heart")
    np.testing.assert_array_equal(v.style_for(10), v.styles[9:10])
    assert v.style_for(600).shape == (1, 256)
    np.testing.assert_array_equal(v.style_for(600), v.styles[509:510])


def test_load_folder_npz_and_voices_txt(tmp_path):
    arr = np.ones((510, 256), np.float32)
    (tmp_path / "dir").mkdir()
    arr.tofile(tmp_path / "dir" / "af_heart.bin")
    np.save(tmp_path / "dir" / "bf_emma.npy", arr.reshape(510, 1, 256))
    assert sorted(load_style_tables(tmp_path / "dir")) == ["af_heart", "bf_emma"]
    np.savez(tmp_path / "voices.npz", arr, arr)
    (tmp_path / "voices.txt").write_text("0=af_heart\n1=am_adam\n")
    assert sorted(load_style_tables(tmp_path / "voices.npz")) == ["af_heart", "am_adam"]
    (tmp_path / "bad").mkdir()
    np.zeros(100, np.float32).tofile(tmp_path / "bad" / "af_x.bin")
    with pytest.raises(ConfigError, match="af_x"):
        load_style_tables(tmp_path / "bad")


def test_voice_files_are_mapped_not_read_and_bad_sizes_still_fail(tmp_path):
    arr = np.arange(510 * 256, dtype=np.float32).reshape(510, 256)
    arr.tofile(tmp_path / "af_heart.bin")
    (tmp_path / "af_empty.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match="af_empty"):
        load_style_tables(tmp_path)
    (tmp_path / "af_empty.bin").write_bytes(b"\0" * 7)  # not a whole number of floats
    with pytest.raises(ConfigError, match="af_empty"):
        load_style_tables(tmp_path)
    (tmp_path / "af_empty.bin").unlink()
    table = load_style_tables(tmp_path)["af_heart"]
    assert isinstance(table, np.memmap) and not table.flags.writeable
    np.testing.assert_array_equal(table, arr)


def test_unknown_voice_counts_the_voices_offered_not_installed() -> None:
    """Without the ja extra its voices are installed but not offered: Home Assistant
    shows the message as is, so the count is what the catalog lists."""
    rng = np.random.default_rng(0)
    names = ("af_heart", "bm_george", "jf_alpha", "jm_kumo", "custom")
    no_japanese = LanguageTable(installed=lambda module: module != "misaki_ja_lightning")
    voices = VoiceStore(
        {n: rng.standard_normal((510, 256)).astype(np.float32) for n in names}, no_japanese
    )
    assert [v.name for v in voices.infos] == ["af_heart", "bm_george"]
    with pytest.raises(UnknownVoice, match=r"\(3 voices available\)"):
        voices.resolve("zz_nobody")
