"""Where a Wyoming stream's text is cut into the pieces spoken one after another.

Home Assistant relays an LLM's reply as it is written. Waiting for each sentence's end
(and, after ".", for the next sentence's first letter: "Dr. Smith" is no sentence end)
is right for the middle of a reply, where the audio before it still plays. It is wrong
for the first words, where the listener hears nothing until they are spoken, and when
the LLM stops writing for a while (a tool call): then what is written is all there is.
So, besides sentences, :class:`StreamText` gives

* the first clause of a reply once it has ``first_clause_words`` words (a comma,
  semicolon, colon or dash followed by a space: "3,000" and "12:30" are not clauses),
* everything buffered after ``stall_timeout_s`` without new text.

A piece cut inside a sentence is marked, so its edges are trimmed like the engine's
own cuts (a comma's pause, not Kokoro's 0.75 s of silence around every call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..engine.text.sentences import SentenceSplitter

# A clause ends at one of these when whitespace follows. A hyphen only counts with
# whitespace on both sides ("well-known" is one word); dashes count either way.
_CLAUSE_MARKS = frozenset(",;:،、，；：")
_DASHES = frozenset("—–")
# A piece ending in one of these ends a sentence: no join trimming after it.
_SENTENCE_ENDS = frozenset(".!?…。！？।॥\"'”’»)]")


@dataclass(frozen=True)
class Piece:
    """Text to speak as one engine request, and whether it sits inside a sentence."""

    text: str
    joins_prev: bool = False  # continues a sentence cut before it
    joins_next: bool = False  # stops inside a sentence (a clause or a stall)


class TextPieces(Protocol):
    """A stream's text in, the pieces to speak out (what :class:`StreamText` does for
    text, and wyoming_api/ssml_stream.py for SSML)."""

    @property
    def pending(self) -> str:
        """Text received but not released as a piece yet."""
        ...

    def add(self, chunk: str) -> list[Piece]: ...

    def flush(self) -> list[Piece]: ...

    def finish(self) -> Piece | None: ...


class StreamText:
    """Chunks in, pieces out: sentences, and the first clause / a stalled remainder.

    ``pending`` mirrors the splitter's unreleased text exactly (its trailing whitespace
    included), so a cut can take part of it and hand the rest back to a new splitter.
    """

    def __init__(self, lang: str | None, first_clause_words: int) -> None:
        self._lang = lang
        self._splitter = SentenceSplitter(lang)
        self._first_clause_words = first_clause_words
        self.pending = ""
        self.pieces = 0  # released so far
        self._inside = False  # the last piece stopped inside a sentence

    def add(self, chunk: str) -> list[Piece]:
        """Append a chunk; the pieces it completed, in order."""
        text = self.pending + chunk
        sentences = self._splitter.add(chunk)
        self.pending = _remainder(text, sentences, self._lang) if sentences else text
        pieces = [self._piece(s, inside=False) for s in sentences]
        if not pieces and self.pieces == 0 and self._first_clause_words > 0:
            cut = first_clause(self.pending, self._first_clause_words)
            if cut is not None:
                pieces = self._cut(cut)
        return pieces

    def flush(self) -> list[Piece]:
        """The text stalled: everything written. (LLM tokens end where a word does far
        more often than not, and a writer that paused this long is not mid-word.)"""
        if not any(ch.isalnum() for ch in self.pending):
            return []
        return self._cut(len(self.pending))

    def finish(self) -> Piece | None:
        """synthesize-stop: the rest, whatever it is."""
        rest = self._splitter.finish()
        self.pending = ""
        return self._piece(rest, inside=False) if rest else None

    def _cut(self, end: int) -> list[Piece]:
        """Speak ``pending[:end]`` now; the rest goes back to a fresh splitter."""
        head, tail = self.pending[:end].strip(), self.pending[end:].lstrip()
        self._splitter.finish()
        self.pending = ""
        pieces = [self._piece(head, inside=not head.endswith(tuple(_SENTENCE_ENDS)))]
        # The splitter saw this text whole and found no sentence end in it; a part of
        # it seen alone may differ ("Dr." at its start), so take what it says.
        return pieces + self.add(tail)

    def _piece(self, text: str, *, inside: bool) -> Piece:
        piece = Piece(text, joins_prev=self._inside, joins_next=inside)
        self._inside = inside
        self.pieces += 1
        return piece


def first_clause(text: str, min_words: int) -> int | None:
    """End of the first clause of ``text`` with at least ``min_words`` words before it
    (index after its mark), or ``None``."""
    words = 0
    in_word = False
    for i, ch in enumerate(text):
        if ch.isspace():
            in_word = False
            continue
        if not in_word and ch.isalnum():
            words += 1
        in_word = True
        after = text[i + 1 : i + 2]
        if not after or not after.isspace() or words < min_words:
            continue
        if ch in _CLAUSE_MARKS or ch in _DASHES:
            return i + 1
        if ch == "-" and i > 0 and text[i - 1].isspace():
            return i + 1
    return None


def _remainder(text: str, sentences: list[str], lang: str | None) -> str:
    """What the splitter keeps of ``text`` after releasing ``sentences``: a fresh
    splitter on the same text gives the same cuts; its ``finish()`` is the remainder
    stripped, and the remainder ends where ``text`` does."""
    fresh = SentenceSplitter(lang)
    fresh.add(text)
    rest = fresh.finish()
    if rest:
        return text[len(text.rstrip()) - len(rest) :]
    last = sentences[-1]
    return text[text.rfind(last) + len(last) :].lstrip()
