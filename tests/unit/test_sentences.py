"""Streaming sentence splitter: same sentences however the text is chunked."""

from __future__ import annotations

import random

import pytest

from fastkokoro_wyoming.engine.text.sentences import SentenceSplitter, split_sentences

CASES: list[tuple[str | None, str, list[str]]] = [
    ("a", "Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
    (
        "a",
        "Dr. Smith met Mr. Jones at 3.5 p.m. today. They talked, e.g. about U.S. law. OK.",
        ["Dr. Smith met Mr. Jones at 3.5 p.m. today.", "They talked, e.g. about U.S. law.", "OK."],
    ),
    ("a", "It costs 3.50. Then we leave.", ["It costs 3.50.", "Then we leave."]),
    ("a", '"Really?" she asked. "Yes." He left.', ['"Really?" she asked.', '"Yes."', "He left."]),
    ("a", "Wait... What? No way… really.", ["Wait...", "What?", "No way… really."]),
    ("a", "See No. 5 and J. R. R. Tolkien. Done.", ["See No. 5 and J. R. R. Tolkien.", "Done."]),
    ("a", "Neither do I. Then go.", ["Neither do I.", "Then go."]),
    (
        "a",
        "Title\n\nBody text here\nsame para.\n\n\nEnd",
        ["Title", "Body text here\nsame para.", "End"],
    ),
    ("a", "Steps:\n1. Open it. 2. Close it.", ["Steps:\n1. Open it.", "2. Close it."]),
    ("a", "Only dots ... --- . Real one.", ["Only dots ...", "Real one."]),  # "--- ." dropped
    (
        "j",
        "こんにちは。元気ですか？「はい。」と言った。",
        ["こんにちは。", "元気ですか？", "「はい。」", "と言った。"],
    ),
    ("z", "你好！今天天气很好。我们走吧", ["你好！", "今天天气很好。", "我们走吧"]),
    (None, "你好。Hello there. Bye", ["你好。", "Hello there.", "Bye"]),
    ("h", "यह पहला वाक्य है। यह दूसरा है॥तीसरा", ["यह पहला वाक्य है।", "यह दूसरा है॥", "तीसरा"]),
    (
        "e",
        "¿Cómo estás? ¡Muy bien! La Sra. García llegó.",
        ["¿Cómo estás?", "¡Muy bien!", "La Sra. García llegó."],
    ),
    ("f", "Bonjour M. Dupont. Ça va ?", ["Bonjour M. Dupont.", "Ça va ?"]),
    ("a", "", []),
    ("a", "   \n\n  ", []),
]


def _chunked(lang: str | None, pieces: list[str]) -> list[str]:
    splitter = SentenceSplitter(lang)
    out: list[str] = []
    for piece in pieces:
        out.extend(splitter.add(piece))
    rest = splitter.finish()
    return out + [rest] if rest else out


@pytest.mark.parametrize(("lang", "text", "expected"), CASES)
def test_whole_text(lang: str | None, text: str, expected: list[str]) -> None:
    assert split_sentences(text, lang) == expected


@pytest.mark.parametrize(("lang", "text", "expected"), CASES)
def test_every_split_point_gives_the_same_sentences(
    lang: str | None, text: str, expected: list[str]
) -> None:
    for cut in range(len(text) + 1):
        assert _chunked(lang, [text[:cut], text[cut:]]) == expected, cut
    assert _chunked(lang, list(text)) == expected
    rng = random.Random(len(text))
    for _ in range(20):
        cuts = sorted(rng.sample(range(len(text) + 1), k=min(4, len(text) + 1)))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert _chunked(lang, pieces) == expected, pieces


def test_sentence_is_released_once_the_next_one_starts() -> None:
    splitter = SentenceSplitter("a")
    assert splitter.add("Hello there.") == []
    assert splitter.add(" ") == []  # "Dr. Smith" looks the same until here
    assert splitter.add("H") == ["Hello there."]
    assert splitter.add("ow are you") == []
    assert splitter.finish() == "How are you"
    assert splitter.finish() == ""  # reset after finish


def test_cjk_stop_needs_no_space() -> None:
    splitter = SentenceSplitter("j")
    assert splitter.add("はい。") == []  # a closing 」 could still follow
    assert splitter.add("次") == ["はい。"]


def test_spanish_openers_do_not_end_sentences() -> None:
    assert split_sentences("¡Hola! ¿Qué tal?", "e") == ["¡Hola!", "¿Qué tal?"]
