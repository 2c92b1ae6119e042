"""The typography regression corpus (tests/data/replies.yaml) through the real G2P.

Each reply is read as an assistant writes it (curly apostrophes, em dashes, no-break
spaces, emoji, markdown) and as its ASCII twin: both must give the same phonemes, and
each risky token (a negation, a number, a unit) its phonemes. The bug this guards
against: "No, it isn’t." read as "No, it is." (misaki split a curly ``n’t`` before a
full stop differently). ~4 s (spaCy and misaki load once, ~400 replies phonemized).
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import yaml

from fastkokoro_wyoming.engine.text.cleanup import clean
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.sentences import split_sentences
from fastkokoro_wyoming.engine.text.vocab import Vocab

CORPUS = Path(__file__).resolve().parents[1] / "data" / "replies.yaml"
REPLIES: list[dict] = yaml.safe_load(CORPUS.read_text("utf-8"))

# What someone typing ASCII writes for each typographic character in the corpus.
ASCII = {
    "’": "'",
    "‘": "'",
    "“": '"',
    "”": '"',
    "′": "'",
    "″": '"',
    "—": "--",
    "…": "...",
    "‑": "-",
    "−": "-",
    "–": "-",
    "\u00a0": " ",
    "\u202f": " ",
    "\u00ad": "",
    "\u200b": "",
    "\u200d": "",
    "，": ", ",
    "！": "!",
    "ﬁ": "fi",
}


def ascii_twin(text: str) -> str:
    out = "".join(ASCII.get(ch, ch) for ch in text)
    return "".join(chr(ord(c) - 0xFEE0) if "Ａ" <= c <= "ｚ" else c for c in out)


@functools.cache
def _g2p() -> tuple[G2P, Vocab]:
    return G2P(LanguageTable()), Vocab.load()


def phonemes(text: str) -> str:
    """What the engine gives the model: cleanup, sentences, G2P, vocabulary."""
    g2p, vocab = _g2p()
    return " ".join(vocab.keep(g2p.phonemize(s, "a")) for s in split_sentences(clean(text), "a"))


def test_the_corpus_is_big_and_varied():
    assert len(REPLIES) >= 150
    typographic = [r for r in REPLIES if ascii_twin(r["text"]) != r["text"]]
    assert len(typographic) >= 120
    assert all(r["expect"] for r in REPLIES)


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: r["text"][:40])
def test_reply_reads_its_risky_tokens_and_matches_its_ascii_twin(reply):
    got = phonemes(reply["text"])
    for word, expected in reply["expect"].items():
        assert expected in got, f"{word!r}: {expected!r} not in {got!r}"
    assert phonemes(ascii_twin(reply["text"])) == got


@pytest.mark.parametrize(
    "text,negation",
    [
        ("No, it isn’t.", "ˈɪzᵊnt."),
        ("They aren’t!", "ˌɑɹnt!"),
        ("It doesn’t?", "dˈʌzᵊnt?"),
        ("No, it wasn’t.", "wˈʌzᵊnt."),
    ],
)
def test_a_curly_negation_at_a_sentence_end_is_spoken(text, negation):
    """The examples of the issue: the meaning of the reply flipped."""
    assert phonemes(text).endswith(negation)


@pytest.mark.parametrize(
    "lang,typographic,ascii_text,module",
    [
        (
            "f",
            "Il n’est pas là — c’est l’heure… « Oui ! »",
            "Il n'est pas là -- c'est l'heure... \"Oui !\"",
            None,
        ),
        (
            "e",
            "No, no está — ¿verdad?… Son 1\u00a0250 €.",
            "No, no está -- ¿verdad?... Son 1.250 €.",
            None,
        ),
        ("i", "L’ho già fatto — è l’una…", "L'ho già fatto -- è l'una...", None),
        ("p", "Não está — são 8h30… “ok”", 'Não está -- são 8h30... "ok"', None),
        ("h", "यह ठीक है — हाँ…", "यह ठीक है -- हाँ...", None),
        ("z", "他说“你好”——今天２５度。", "他说“你好”——今天25度。", "jieba"),
        ("j", "「はい」……２５度です。", "「はい」……25度です。", "misaki_ja_lightning"),
    ],
)
def test_typography_in_every_language(lang, typographic, ascii_text, module):
    """The same fold before every G2P: typography reads as what an ASCII writer types (a
    no-break space between digit groups as the grouping it is, "1 250" = "1.250" in
    Spanish); Chinese and Japanese keep their own punctuation. ~3 s (espeak, jieba, MeCab)."""
    if module:
        pytest.importorskip(module)
    g2p, vocab = _g2p()

    def read(text: str) -> str:
        return " ".join(g2p.phonemize(s, lang) for s in split_sentences(clean(text), lang))

    assert read(typographic) == read(ascii_text)
