"""Typography folding (engine/text/typography.py) and its place in the cleanup. Pure, < 0.1 s."""

from __future__ import annotations

import pytest

from fastkokoro_wyoming.engine.text.cleanup import clean, normalize_english
from fastkokoro_wyoming.engine.text.typography import fold_typography


@pytest.mark.parametrize(
    "text,folded",
    [
        ("No, it isn’t.", "No, it isn't."),
        ("‘quoted’ and “double” and „low“", '\'quoted\' and "double" and "low"'),
        ("rock ’n’ roll, the ’90s, dogs’ bowls", "rock 'n' roll, the '90s, dogs' bowls"),
        ("isn´t and isn`t", "isn't and isn't"),
        ("Wait—what?", "Wait — what?"),
        ("Wait -- what?", "Wait — what?"),
        ("Wait – what?", "Wait — what?"),
        ("Wait―what?", "Wait — what?"),
        ("5–10 minutes, 5 – 10", "5-10 minutes, 5-10"),
        ("−3, non‑breaking, hy‐phen", "-3, non-breaking, hy-phen"),
        ("Well... maybe. ⋯ ok…", "Well… maybe. … ok…"),
        ("a\u00a0b\u2009c\u3000d", "a b c\u3000d"),
        ("1\u00a0250\u00a0000 euros", "1\u202f250\u202f000 euros"),
        ("super\u00adcali", "supercali"),
        ("zero\u200bwidth\u200d joiner\ufeff", "zerowidth joiner"),
        ("ok\ufe0f", "ok"),
        ("Ｈｅｌｌｏ１２３", "Hello123"),
        ("Hello，world！ Yes？", "Hello, world! Yes?"),
        ("the ﬁreplace", "the fireplace"),
        ("« Bonjour »", '"Bonjour"'),
        ("5′10″", "5'10\""),
        ("line\u2028next", "line\nnext"),
    ],
)
def test_fold(text, folded):
    assert fold_typography(text) == folded


@pytest.mark.parametrize(
    "text",
    ["你好，世界！", "他说“你好”。", "等等——好的。", "「こんにちは」と言った。", "１２３の"],
)
def test_chinese_and_japanese_keep_their_punctuation(text):
    folded = fold_typography(text)
    assert folded.replace("123", "１２３") == text.replace("——", "—")


def test_plain_ascii_meets_the_same_forms():
    assert fold_typography("Well... ok -- fine") == fold_typography("Well… ok — fine")
    assert fold_typography("plain text, nothing to do.") == "plain text, nothing to do."
    assert fold_typography("--help and a-b and 3-4") == "--help and a-b and 3-4"


def test_clean_folds_after_markdown_and_keeps_inline_phonemes():
    text = "**Don’t** — see [Kokoro](/kˈOkəɹO/) and [docs](https://x.io)… “ok”"
    assert clean(text) == 'Don\'t — see [Kokoro](/kˈOkəɹO/) and docs… "ok"'


def test_inline_phonemes_keep_the_symbols_typography_would_fold():
    assert clean("[A](/“ə”…—/) b") == "[A](/“ə”…—/) b"


def test_list_lines_get_a_pause():
    assert clean("Your list:\n- Eggs\n- Milk\n- [x] Bread") == "Your list:\nEggs,\nMilk,\nBread"
    assert clean("## Rooms\n\nKitchen\n\nDone.") == "Rooms.\n\nKitchen.\n\nDone."


@pytest.mark.parametrize(
    "text,read",
    [
        ("5-10 minutes", "5 to 10 minutes"),
        ("a score of 3-2.", "a score of 3 to 2."),
        ("It's -3 today", "It's minus 3 today"),
        ("5'10\" tall", "5 feet 10 inches tall"),
        ("the '90s", "the '90s"),
        ("1\u202f250 steps", "1,250 steps"),
        ("2024-05-01 and 555-1234", "2024-05-01 and 555-1234"),
    ],
)
def test_english_reading_rules_for_what_typography_leaves(text, read):
    assert normalize_english(text) == read
