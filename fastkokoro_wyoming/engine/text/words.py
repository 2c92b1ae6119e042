"""Word timestamps, text side: which phoneme ids of a segment say which word of the input.

Three maps are chained, each kept as simple as the G2P allows:

1. **Source words -> normalized text.** The reading rules rewrite text ("10:30 pm" ->
   "ten thirty p m", "e.g." -> "for example"). Whitespace words of both are aligned
   (difflib); an unmatched run keeps its words when the counts agree, else it becomes
   one entry ("10:30 pm"), so every entry is text as written.
2. **Normalized text -> phonemes.** misaki (English) returns its tokens, each with its
   text and phonemes ("$" + "12.50" -> "twˈɛlv dˈɑləɹz ænd fˈɪfti sˈɛnts"): a token
   belongs to the entry whose text holds it. espeak-ng (es, fr, hi, it, pt) returns one
   phoneme word per text word, which is used when the counts agree. Otherwise (Mandarin
   and Japanese, whose text has no spaces, or a sentence whose counts differ) the
   sentence is one entry.
3. **Phonemes -> segment ids.** Segmentation only cuts at or strips whitespace, so the
   non-space phoneme characters of a piece's segments are those of its sentences, in
   order: a label per non-space character carries the word across the cut.

An inline pronunciation ``[word](/phonemes/)`` is its word throughout: misaki's token
for it has the word as its text.

Punctuation and spaces are labelled no word: their durations are pauses, not speech.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from .inline import plain

_WORD = re.compile(r"\S+")
PUNCTUATION = frozenset(";:,.!?—…\"()“”«»¿¡[]{}-–'’‘")
_LEADING = "\"'“‘«([{¿¡"
_TRAILING = ",;:!?…\"'”’»)]}"

Token = tuple[str, str, str]  # a G2P word token: (text, phonemes, whitespace after)


@dataclass(frozen=True)
class WordSpan:
    """One word's ids in one segment (positions in ``Segment.ids``, ``last`` included).

    A word longer than the model's capacity is the only one cut across segments: its
    first part ``opens`` it, its last part ``closes`` it.
    """

    index: int  # the word's place in the request
    text: str
    first: int
    last: int
    opens: bool = True
    closes: bool = True


@dataclass(frozen=True)
class SentenceWords:
    """A sentence's entries (text as written) and, per phoneme character, the entry it
    says (-1: punctuation, space, or nothing)."""

    texts: tuple[str, ...]
    labels: tuple[int, ...]


def written(word: str, last: bool = False) -> str:
    """A word as shown: surrounding quotes, brackets and phrase punctuation dropped; the
    sentence's full stop after its ``last`` word too ("dog." -> "dog"), but not an
    abbreviation's ("Dr." and "U.S.A." stay)."""
    word = word.lstrip(_LEADING).rstrip(_TRAILING)
    if last and word.endswith(".") and word.count(".") == 1:
        word = word[:-1].rstrip(_TRAILING)
    return word


def _speakable(word: str) -> bool:
    return any(c.isalnum() for c in word)


def source_entries(source: str, normalized: str) -> list[tuple[str, int, int]]:
    """Entries ``(text as written, start, end)``: the range of ``normalized`` that says
    each word (or run of words) of ``source``. Words the rules dropped get no entry;
    words the rules added belong to the entry before them."""
    src = list(_WORD.finditer(source))
    dst = list(_WORD.finditer(normalized))
    matcher = SequenceMatcher(a=[m[0] for m in src], b=[m[0] for m in dst], autojunk=False)
    entries: list[tuple[str, int, int]] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "delete":
            continue
        if op == "insert":
            if entries:
                text, start, _ = entries[-1]
                entries[-1] = (text, start, dst[j2 - 1].end())
            else:  # nothing before: it opens the first entry instead
                entries.append(("", dst[j1].start(), dst[j2 - 1].end()))
            continue
        if i2 - i1 == j2 - j1:  # equal, or a one-for-one rewrite ("km" -> "kilometers")
            entries += [(src[i][0], dst[j].start(), dst[j].end()) for i, j in
                        zip(range(i1, i2), range(j1, j2), strict=True)]  # fmt: skip
        else:
            text = source[src[i1].start() : src[i2 - 1].end()]
            entries.append((text, dst[j1].start(), dst[j2 - 1].end()))
    if entries and not entries[0][0] and len(entries) > 1:  # merge a leading insert
        _, start, _ = entries.pop(0)
        text, _, end = entries[0]
        entries[0] = (text, start, end)
    entries = [(t, a, b) for t, a, b in entries if _speakable(t)]
    return [(written(t, k == len(entries) - 1), a, b) for k, (t, a, b) in enumerate(entries)]


def token_spans(normalized: str, tokens: Sequence[Token]) -> list[tuple[int, int, int]]:
    """``(text offset, phoneme start, phoneme end)`` of every token, phonemes being the
    string misaki builds: each token's phonemes then its whitespace."""
    spans = []
    text_pos = ph_pos = 0
    for text, phonemes, space in tokens:
        found = normalized.find(text, text_pos) if text else -1
        if found >= 0:
            text_pos = found
        spans.append((text_pos, ph_pos, ph_pos + len(phonemes)))
        if found >= 0:
            text_pos += len(text)
        ph_pos += len(phonemes) + len(space)
    return spans


def word_spans(normalized: str, phonemes: str) -> list[tuple[int, int, int]] | None:
    """The same from space-separated phoneme words (espeak-ng), when there is one per
    speakable text word; None when the counts differ."""
    text_words = [m for m in _WORD.finditer(normalized) if _speakable(m[0])]
    ph_words = [m for m in _WORD.finditer(phonemes) if any(c not in PUNCTUATION for c in m[0])]
    if not text_words or len(text_words) != len(ph_words):
        return None
    return [(t.start(), p.start(), p.end()) for t, p in zip(text_words, ph_words, strict=True)]


def label_sentence(
    source: str, normalized: str, phonemes: str, tokens: Sequence[Token] | None
) -> SentenceWords:
    """Per phoneme character of ``phonemes``, the entry of ``source`` it says. Inline
    pronunciations (the user's or the lexicon's) count as the word they spell."""
    source, normalized = plain(source), plain(normalized)
    entries = source_entries(source, normalized)
    spans = token_spans(normalized, tokens) if tokens is not None else None
    if spans is None:
        spans = word_spans(normalized, phonemes)
    if not entries or spans is None:  # no word boundaries: the sentence is one entry
        text = written(" ".join(source.split()), last=True)
        labels = [-1 if c.isspace() or c in PUNCTUATION else 0 for c in phonemes]
        return SentenceWords((text,) if _speakable(text) else (), tuple(labels))
    starts = [a for _, a, _ in entries]
    labels = [-1] * len(phonemes)
    for offset, lo, hi in spans:
        entry = _entry_at(starts, entries, offset)
        if entry is None:
            continue
        for k in range(lo, min(hi, len(phonemes))):
            if not phonemes[k].isspace() and phonemes[k] not in PUNCTUATION:
                labels[k] = entry
    used = sorted(set(labels) - {-1})  # entries that got no phonemes are not spoken
    renumber = {old: new for new, old in enumerate(used)}
    return SentenceWords(
        tuple(entries[i][0] for i in used), tuple(renumber.get(lab, -1) for lab in labels)
    )


def _entry_at(starts: list[int], entries: list[tuple[str, int, int]], offset: int) -> int | None:
    """The entry whose normalized range holds ``offset`` (the last starting before it)."""
    best = None
    for i, start in enumerate(starts):
        if start > offset:
            break
        best = i
    if best is None:
        return 0 if entries else None
    return best


class WordLabels:
    """Carries one request's word labels from its sentences to the segments cut from them.

    ``add`` is called for each sentence as it is phonemized, ``spans`` for each segment
    as it is cut; segmentation consumes a sentence before it yields any part of it, so
    the labels of a segment's characters are always queued by then.
    """

    def __init__(self, kept: Callable[[str], bool]) -> None:
        self.kept = kept  # whether the vocabulary keeps a phoneme character
        self.count = 0  # words so far
        self.queued: deque[int] = deque()  # labels of non-space characters not cut yet
        self.texts: dict[int, str] = {}  # words not closed yet
        self.opened: set[int] = set()  # words cut across segments, first part out

    def add(self, words: SentenceWords, phonemes: str) -> None:
        for i, text in enumerate(words.texts):
            self.texts[self.count + i] = text
        for ch, label in zip(phonemes, words.labels, strict=True):
            if self.kept(ch) and not ch.isspace():
                self.queued.append(label + self.count if label >= 0 else -1)
        self.count += len(words.texts)

    def spans(self, phonemes: str) -> tuple[WordSpan, ...]:
        """The words of a segment's (kept) phonemes, one span per word, in order."""
        bounds: dict[int, list[int]] = {}
        for pos, ch in enumerate(phonemes):
            if ch.isspace() or not self.queued:
                continue
            label = self.queued.popleft()
            if label >= 0:
                bounds.setdefault(label, [pos, pos])[1] = pos
        out = []
        for index, (first, last) in bounds.items():
            closes = not (self.queued and self.queued[0] == index)
            opens = index not in self.opened
            if closes:
                self.opened.discard(index)
                text = self.texts.pop(index, "")
            else:
                self.opened.add(index)
                text = self.texts.get(index, "")
            out.append(WordSpan(index, text, first, last, opens=opens, closes=closes))
        return tuple(out)
