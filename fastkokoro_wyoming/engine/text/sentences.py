"""Sentence boundaries for text that arrives in pieces (LLM deltas, Wyoming chunks).

Streaming TTS wants each sentence as soon as it is complete, but chunks split text
anywhere, even inside words. So a boundary is only declared once the text that
decides it has arrived: after ``.`` we wait for the whitespace *and* the next
visible character, because "Dr. Smith", "e.g. this", "U.S. law" and "3.5" all
look like sentence ends until then. Decisions depend only on text already seen,
so the same text gives the same sentences however it was chunked.
"""

from __future__ import annotations

# Ends a sentence only when followed by whitespace and a plausible sentence start.
_ENDERS = frozenset(".!?…")
# CJK full stops need no space after them (ja/zh text has none).
_CJK_ENDERS = frozenset("。！？")
# Hindi danda / double danda: never ambiguous, so no space needed either.
_DANDAS = frozenset("।॥")
# May follow an ender and still belong to the sentence: quotes, brackets, markdown emphasis.
_CLOSERS = frozenset("\"'”’»›)]}」』）】〕〉》*_")

# Lowercased words that, before a single ".", do not end a sentence (titles and the like
# precede a capitalised name, so the "next char is not lowercase" rule can't catch them).
_ABBREVIATIONS: dict[str, frozenset[str]] = {
    "en": frozenset(
        "mr mrs ms mx dr prof sr jr st mt gen col capt lt sgt rev hon gov pres sen rep "
        "inc ltd co corp jan feb mar apr jun jul aug sep sept oct nov dec approx dept est".split()
    ),
    "es": frozenset("sr sra srta sres dr dra ud uds lic ing prof dña gral av".split()),
    "fr": frozenset("m mm mme mmes mlle dr pr me st ste av bd".split()),
    "it": frozenset("sig sigg dott dr prof ing avv arch geom rag on".split()),
    "pt": frozenset("sr sra srta dr dra prof profa exmo exma av".split()),
}
# Before a digit these abbreviate "number", "page", ... ("No. 5", "Vol. 2").
_NUMBER_ABBREVIATIONS = frozenset("no nos nr núm num vol ch art fig pp pg tel".split())
# Kokoro one-letter language code -> abbreviation table.
_LANG_TABLES = {"a": ("en",), "b": ("en",), "e": ("es",), "f": ("fr",), "i": ("it",), "p": ("pt",)}


def _abbreviations(lang: str | None) -> frozenset[str]:
    """English titles always apply (they show up in every language); None takes all tables."""
    keys = _LANG_TABLES.get(lang, ()) if lang is not None else tuple(_ABBREVIATIONS)
    words: set[str] = set(_ABBREVIATIONS["en"])
    for key in keys:
        words |= _ABBREVIATIONS[key]
    return frozenset(words)


def _speakable(sentence: str) -> bool:
    """A piece with no letter or digit ("...", "---", an emoji) has nothing to say."""
    return any(ch.isalnum() for ch in sentence)


class SentenceSplitter:
    """Incremental sentence splitter; feed chunks with add(), drain the rest with finish().

    ``lang`` is Kokoro's one-letter code (a b j z e f h i p) or None (guess: CJK
    stops split immediately, every abbreviation table applies).
    """

    def __init__(self, lang: str | None = None) -> None:
        self._lang = lang
        self._immediate = _DANDAS | (_CJK_ENDERS if lang in (None, "j", "z") else frozenset())
        self._enders = _ENDERS | _CJK_ENDERS | _DANDAS
        self._abbreviations = _abbreviations(lang)
        self._buf = ""
        self._scan = 0  # everything before this index is known not to hold a boundary

    def add(self, chunk: str) -> list[str]:
        """Append text; return the sentences it completed (stripped, in order)."""
        self._buf += chunk
        sentences: list[str] = []
        while (cut := self._next_boundary()) is not None:
            sentence, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            self._scan = 0
            if _speakable(sentence):
                sentences.append(sentence)
        return sentences

    def finish(self) -> str:
        """Return the unfinished remainder ("" if nothing speakable) and reset for reuse."""
        rest, self._buf, self._scan = self._buf.strip(), "", 0
        return rest if _speakable(rest) else ""

    def _next_boundary(self) -> int | None:
        """Index where the first complete sentence ends, or None (no boundary yet).

        Advances ``self._scan`` past text already decided, so re-scanning after each
        chunk stays linear.
        """
        buf, n = self._buf, len(self._buf)
        i = self._scan
        while i < n:
            ch = buf[i]
            if ch.isspace():
                end = i
                while end < n and buf[end].isspace():
                    end += 1
                if buf.count("\n", i, end) >= 2:
                    return i  # a blank line ends whatever came before it
                if end == n:
                    self._scan = i  # the run may still grow into a blank line
                    return None
                i = end
                continue
            if ch not in self._enders:
                i += 1
                continue
            run_end = i
            while run_end < n and buf[run_end] in self._enders:
                run_end += 1
            close_end = run_end
            while close_end < n and buf[close_end] in _CLOSERS:
                close_end += 1
            if close_end == n:
                self._scan = i  # more enders or closers may follow
                return None
            if any(c in self._immediate for c in buf[i:run_end]):
                return close_end
            if not buf[close_end].isspace():
                i = close_end  # "3.5", "e.g", "?!)" inside a word: not an end
                continue
            nxt = close_end
            while nxt < n and buf[nxt].isspace():
                nxt += 1
            if buf.count("\n", close_end, nxt) >= 2:
                return close_end
            if nxt == n:
                self._scan = i  # the next sentence's first character decides
                return None
            if self._ends_sentence(i, run_end, buf[nxt]):
                return close_end
            i = nxt
        self._scan = n
        return None

    def _ends_sentence(self, start: int, run_end: int, following: str) -> bool:
        """Decide an ender run ``buf[start:run_end]`` that is followed by space + ``following``."""
        if following.islower():
            return False  # "Really?" she asked / e.g. this / etc. and so on
        if self._buf[start:run_end] != ".":
            return True
        word_start = start
        while word_start > 0 and (
            self._buf[word_start - 1].isalnum() or self._buf[word_start - 1] == "."
        ):
            word_start -= 1
        word = self._buf[word_start:start]
        if not word:
            return True
        if "." in word:
            # U.S. / p.m. / Ph.D. hold; "example.com." and "3.50." end sentences
            return not all(p.isalpha() and len(p) <= 3 for p in word.split("."))
        if len(word) == 1 and word.isalpha() and word != "I":
            return False  # initials: "J. R. R. Tolkien"
        lowered = word.lower()
        if lowered in self._abbreviations:
            return False
        if following.isdigit() and lowered in _NUMBER_ABBREVIATIONS:
            return False
        if word.isdigit() and self._at_line_start(word_start):
            return False  # "1. Apples" is a list marker, not a sentence
        return True

    def _at_line_start(self, index: int) -> bool:
        """True if only spaces separate ``index`` from the sentence start or a newline."""
        j = index - 1
        while j >= 0 and self._buf[j] in " \t":
            j -= 1
        return j < 0 or self._buf[j] == "\n"


def split_sentences(text: str, lang: str | None = None) -> list[str]:
    """Split a whole text with the same rules the streaming splitter uses."""
    splitter = SentenceSplitter(lang)
    sentences = splitter.add(text)
    rest = splitter.finish()
    if rest:
        sentences.append(rest)
    return sentences
