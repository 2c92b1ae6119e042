"""SSML that arrives in chunks (Wyoming ``synthesize-chunk``) -> one document per sentence.

Streaming TTS speaks each sentence as soon as it is complete. With SSML a sentence is
only speakable as a whole document, and a chunk may end anywhere, inside a tag too.
So the raw text is read as tokens (tags, comments, text) only once they are complete;
the plain text between tags goes through the same :class:`~.sentences.SentenceSplitter`
rules as a text stream, and a cut puts the closing tags of the elements open there at
the sentence's end and their start tags, as written, at the next one's start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .sentences import SentenceSplitter
from .ssml import BOUNDARIES

_TAG = re.compile(
    r"<(/?)([A-Za-z_][\w.:-]*)((?:\s+[^\s=/>]+\s*=\s*(?:\"[^\"]*\"|'[^']*'))*)\s*(/?)>"
)
_SPECIAL = (("<!--", "-->"), ("<![CDATA[", "]]>"), ("<?", "?>"))
_ATOMIC = frozenset(("sub", "phoneme", "say-as", "audio", "desc"))  # never cut inside
_HOLD = "X"  # stands for an atomic element's reading: a word (capital: "Dr. X" may end)


@dataclass(frozen=True)
class _Piece:
    """A run of the current sentence's plain text: where it came from in the raw buffer,
    the elements open there, and whether a sentence may end inside it."""

    plain: int  # offset in the plain text
    raw: int  # offset in the raw buffer
    text: str
    stack: tuple[tuple[str, str], ...]  # (name, start tag as written) of open elements
    cuttable: bool


class SsmlSentenceSplitter:
    """:class:`~.sentences.SentenceSplitter` for SSML that arrives in chunks.

    ``add`` returns the sentences a chunk completed, ``finish`` the rest; each is a whole
    SSML document: the elements open where it was cut are closed at its end and opened
    again (as written) at the start of the next. A sentence ends where the plain text's
    rules say (the same rules as for text), or at ``</s>`` / ``</p>``; never inside a
    tag, a comment or an element read as one (``sub``, ``phoneme``, ``say-as``). Input
    it cannot follow (a DTD, a broken tag) is never cut: it all goes to the parser at
    ``finish``, which reports it with its line and column.
    """

    def __init__(self, lang: str | None = None) -> None:
        self._lang = lang
        self._buf = ""
        self._prefix: tuple[tuple[str, str], ...] = ()  # open at the buffer's start
        self._stuck = False  # something the splitter cannot follow: no more cuts

    def add(self, chunk: str) -> list[str]:
        self._buf += chunk
        out = []
        while not self._stuck and (sentence := self._cut()) is not None:
            out.append(sentence)
        return out

    def finish(self) -> str:
        pieces = self._scan()
        rest = self._document(self._buf, self._prefix, ())
        speakable = (
            self._stuck or pieces is None or any(c.isalnum() for p in pieces for c in p.text)
        )
        self._buf, self._prefix, self._stuck = "", (), False
        return rest if speakable else ""

    def _document(
        self, body: str, opened: tuple[tuple[str, str], ...], closing: tuple[tuple[str, str], ...]
    ) -> str:
        head = "".join(tag for _, tag in opened)
        tail = "".join(f"</{name}>" for name, _ in reversed(closing))
        return f"{head}{body}{tail}"

    def _cut(self) -> str | None:
        pieces = self._scan()
        if pieces is None:
            return None
        plain = "".join(p.text for p in pieces)
        done = SentenceSplitter(self._lang).add(plain)
        if not done:
            return None
        end = plain.find(done[0]) + len(done[0])
        piece = next((p for p in pieces if p.plain < end <= p.plain + len(p.text)), None)
        if piece is None or not piece.cuttable:
            self._stuck = True  # the rules ended a sentence where we cannot cut
            return None
        raw = piece.raw + (end - piece.plain)
        sentence = self._document(self._buf[:raw], self._prefix, piece.stack)
        self._buf, self._prefix = self._buf[raw:], piece.stack
        return sentence

    def _scan(self) -> list[_Piece] | None:
        """The buffer's complete tokens as plain-text pieces; None once it is stuck."""
        buf, pos, plain = self._buf, 0, 0
        stack = list(self._prefix)
        pieces: list[_Piece] = []

        def emit(text: str, raw: int, cuttable: bool) -> None:
            nonlocal plain
            pieces.append(_Piece(plain, raw, text, tuple(stack), cuttable))
            plain += len(text)

        while pos < len(buf):
            lt = buf.find("<", pos)
            if lt != pos:  # text up to the next tag (or the end: it may still grow)
                stop = len(buf) if lt < 0 else lt
                atomic = any(name in _ATOMIC for name, _ in stack)
                if not atomic:
                    emit(buf[pos:stop], pos, True)
                pos = stop
                continue
            special = next((s for s in _SPECIAL if buf.startswith(s[0], pos)), None)
            if special is not None:
                close = buf.find(special[1], pos)
                if close < 0:
                    return pieces
                pos = close + len(special[1])
                continue
            m = _TAG.match(buf, pos)
            if m is None:
                if ">" in buf[pos:] or buf.startswith("<!", pos):
                    self._stuck = True  # a DTD or a broken tag: the parser will say
                    return None
                return pieces  # an incomplete tag: wait for the rest
            closing, name, empty = m.group(1), m.group(2).lower(), m.group(4)
            atomic_before = any(n in _ATOMIC for n, _ in stack)
            if closing:
                if not stack or stack[-1][0] != name:
                    self._stuck = True
                    return None
                stack.pop()
            elif not empty:
                stack.append((name, m.group(0)))
            if name in BOUNDARIES:
                emit("\n\n", m.end(), False)
            elif name == "break":
                emit(" ", m.end(), False)
            elif name in _ATOMIC and not closing and not atomic_before:
                emit(_HOLD, m.end(), False)
            pos = m.end()
        return pieces
