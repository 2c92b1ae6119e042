"""Inline pronunciation: ``[word](/phonemes/)``, misaki's syntax, in every language.

Kokoro users already fix a word this way. The markdown cleanup keeps these spans
(:func:`protect` / :func:`restore` hide them from it and from the typography fold, which
would rewrite the quotes and dashes Kokoro's phonemes use); the lexicon writes its
entries in the same form, so both reach the G2P the same way. English hands the spans to
misaki, which reads them itself and keeps the word as its token (word timestamps name
it); every other language goes through :func:`split_runs`: the text between spans is
read by its G2P, a span's phonemes are used as written.

A span's phonemes must be symbols of the model's vocabulary: :func:`check` names the
first one that is not (the engine refuses the request with it, HTTP 400 or a Wyoming
``error``) instead of dropping it silently. A markdown link to anything else
(``[docs](https://…)``) is a link: the cleanup reads its text only.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import InvalidPhonemes
from .vocab import Vocab

# misaki's link syntax with a /.../ target. The phonemes hold no "/", "]" or ")" (not
# Kokoro symbols) and no line break.
INLINE = re.compile(r"\[([^\]\n]+)\]\(/([^/)\n]+)/\)")
_PLACEHOLDER = 0xE000  # private-use characters: never in text the cleanup keeps
_PLACEHOLDERS = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class Inline:
    """One ``[word](/phonemes/)`` span: the word as written and the phonemes to say."""

    word: str
    phonemes: str


def link(word: str, phonemes: str) -> str:
    """The span for ``word`` said as ``phonemes``."""
    return f"[{word}](/{phonemes}/)"


def protect(text: str) -> tuple[str, list[str]]:
    """``text`` with each span replaced by one private-use character, and the spans.
    Private-use characters already in ``text`` become spaces (never spoken anyway)."""
    text = _PLACEHOLDERS.sub(" ", text)
    spans: list[str] = []

    def hide(m: re.Match[str]) -> str:
        if len(spans) >= 0x18FF:  # more spans than placeholders: read the rest as text
            return m.group(0)
        spans.append(m.group(0))
        return chr(_PLACEHOLDER + len(spans) - 1)

    return INLINE.sub(hide, text), spans


def restore(text: str, spans: list[str]) -> str:
    """Undo :func:`protect` (after the cleanup ran on the rest)."""
    if not spans:
        return text
    return _PLACEHOLDERS.sub(lambda m: spans[ord(m.group(0)) - _PLACEHOLDER], text)


def has_inline(text: str) -> bool:
    return "](/" in text and INLINE.search(text) is not None


def plain(text: str) -> str:
    """The text as written: each span replaced by its word (word timestamps)."""
    return INLINE.sub(lambda m: m.group(1), text) if "](/" in text else text


def split_runs(text: str) -> Iterator[str | Inline]:
    """Text runs and spans, in order (empty runs dropped)."""
    pos = 0
    for m in INLINE.finditer(text):
        if m.start() > pos:
            yield text[pos : m.start()]
        yield Inline(m.group(1), m.group(2))
        pos = m.end()
    if pos < len(text):
        yield text[pos:]


def map_text(text: str, fn: Callable[[str], str]) -> str:
    """``fn`` applied to each text run, the spans kept as they are."""
    if not has_inline(text):
        return fn(text)
    return "".join(
        link(run.word, run.phonemes) if isinstance(run, Inline) else fn(run)
        for run in split_runs(text)
    )


def unknown_symbol(phonemes: str, vocab: Vocab) -> str | None:
    """The first character of ``phonemes`` the model has no id for, or None."""
    for ch in phonemes:
        if ch not in vocab.table:
            return ch
    return None


def describe(ch: str) -> str:
    """``'X' (U+0058 LATIN CAPITAL LETTER X)``: a symbol named so a user can find it."""
    name = unicodedata.name(ch, "")
    return f"{ch!r} (U+{ord(ch):04X}{' ' + name if name else ''})"


def check(text: str, vocab: Vocab, *, param: str = "input") -> None:
    """Raise InvalidPhonemes naming the first span whose phonemes the model cannot say."""
    if "](/" not in text:
        return
    for m in INLINE.finditer(text):
        bad = unknown_symbol(m.group(2), vocab)
        if bad is not None:
            raise InvalidPhonemes(
                f"inline phonemes for {m.group(1)!r} contain {describe(bad)}, which is not "
                "a Kokoro phoneme (POST /dev/phonemize shows what a word becomes)",
                param=param,
            )
