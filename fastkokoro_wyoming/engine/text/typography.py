"""Typographic characters -> the plain forms every G2P reads the same way.

LLMs write typography: curly apostrophes and quotes, em dashes, ellipses, no-break
spaces. The G2Ps were built on ASCII text and misread them in ways that change the
meaning: misaki read "No, it isn’t." as "No, it is." because its tokenizer does not
split a curly ``n’t`` before a full stop. So before any G2P, in every language, each
such character becomes the form a person typing ASCII would have used, and the same
reply gives the same phonemes whichever way it was typed:

* apostrophes and single quotes (’ ‘ ‚ ‛ ʼ ′ ＇ ‹ › and a ´ or ` between letters) -> ``'``;
  double quotes (“ ” „ ‟ « » ″ ＂) -> ``"``;
* dashes used as pauses (— ― ⸺, a spaced – or -, ``--``) -> one spaced em dash, which
  misaki and Kokoro's vocabulary treat as a pause; ‐ ‑ ‒ − and an en dash between
  digits (a range) -> ``-``;
* ``...`` and ``⋯`` -> ``…`` (one symbol in Kokoro's vocabulary);
* no-break and other Unicode spaces -> a space (a no-break space between digit groups,
  "1 250", stays a narrow no-break space: the reading rules read it as grouping);
  line and paragraph separators -> a newline;
* soft hyphens, zero-width characters, bidi marks and variation selectors -> nothing
  (they sit inside words: a space there would split the word);
* full-width letters and digits -> ASCII; full-width punctuation -> ASCII only in Latin
  text (Chinese and Japanese keep their own, which their G2Ps read);
* ligatures (ﬁ ﬂ) -> their letters.

Quotes and dashes next to Chinese or Japanese characters are left alone for the same
reason as full-width punctuation. Pure function; standard library only.
"""

from __future__ import annotations

import re

# Removed outright: they sit inside words, where a space would split the word.
_INVISIBLE = (
    "\u00ad"  # soft hyphen
    "\u180e"  # Mongolian vowel separator (formerly a space)
    "\u200b\u200c\u200d\u2060\ufeff"  # zero-width space, non-joiner, joiner, word joiner, BOM
    "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # bidi marks
    "\u2061\u2062\u2063\u2064"  # invisible operators
)
_VARIATION = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_SPACES = (
    "\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f"
)
_NO_BREAK = "\u00a0\u2007\u202f"
_LIGATURES = {"ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "st", "ﬆ": "st"}

_APOSTROPHES = "’‘‚‛ʼ′＇‹›"
_DOUBLE_QUOTES = "“”„‟«»″＂〝〞"
_HYPHENS = "\u2010\u2011\u2012\u2212\ufe63\uff0d"  # hyphen, nb hyphen, figure dash, minus
_DASHES = "\u2014\u2015\u2e3a\u2e3b\ufe58"  # em dash, horizontal bar, 2- and 3-em dash

# Chinese, Japanese and Korean script, and their own punctuation.
_CJK = "\u2e80-\u2fff\u3001-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_FULLWIDTH_ALNUM = re.compile("[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]")
_FULLWIDTH_PUNCT = {
    "，": ", ",
    "、": ", ",
    "。": ". ",
    "．": ".",
    "！": "! ",
    "？": "? ",
    "：": ": ",
    "；": "; ",
    "（": " (",
    "）": ") ",
    "［": " [",
    "］": "] ",
    "％": "%",
    "＆": "&",
    "＋": "+",
    "＝": "=",
    "／": "/",
    "＠": "@",
    "＃": "#",
    "＄": "$",
    "～": "~",
    "｜": "|",
    "＊": "*",
}
_CONTEXTUAL = re.compile(f"[{re.escape(''.join(_FULLWIDTH_PUNCT))}{re.escape(_DOUBLE_QUOTES)}–]+")
_GUILLEMET_SPACE = re.compile(r"(?<=[«‹])\s+|\s+(?=[»›])")
_APOSTROPHE_LIKE = re.compile(r"(?<=[^\W\d_])[´`](?=[^\W\d_])")
_ANY_SPACE = re.compile(f"(?<=\\d)([{_NO_BREAK}])(?=\\d{{3}}(?!\\d))|[{_SPACES}]")
_RANGE = re.compile(r"(?<=\d)\s?–\s?(?=\d)")
_DASH_RUN = re.compile(
    rf"\s*(?:[{_DASHES}]+|(?<=\s)[–-]+(?=\s)|(?<![-\w])--+(?![-\w])|(?<=\w)--+(?=\w))\s*"
)
_ELLIPSIS = re.compile(r"\.\s?\.\s?\.(?!\.)|⋯|\u2026+")
_SPACE_RUN = re.compile(r"[ \t]{2,}")


def fold_typography(text: str) -> str:
    """``text`` with typographic characters in the plain forms the G2Ps read (see module)."""
    if text.isascii():
        return _ascii_only(text)
    for ch in _INVISIBLE:
        if ch in text:
            text = text.replace(ch, "")
    text = _VARIATION.sub("", text)
    text = text.replace("\u2028", "\n").replace("\u2029", "\n\n")
    # a no-break space between digit groups stays one (the reading rules read "1 250")
    text = _ANY_SPACE.sub(lambda m: "\u202f" if m.group(1) else " ", text)
    text = _FULLWIDTH_ALNUM.sub(lambda m: chr(ord(m.group(0)) - 0xFEE0), text)
    for lig, letters in _LIGATURES.items():
        if lig in text:
            text = text.replace(lig, letters)
    text = text.translate(_APOSTROPHE_TABLE)
    text = _APOSTROPHE_LIKE.sub("'", text)
    text = text.translate(_HYPHEN_TABLE)
    text = _RANGE.sub("-", text)  # 5–10: what an ASCII writer types
    text = _GUILLEMET_SPACE.sub("", text)  # French « oui »: what "oui" is in ASCII
    text = _CONTEXTUAL.sub(_latin_only, text)
    text = _DASH_RUN.sub(_dash, text)
    text = _ELLIPSIS.sub("…", text)
    return _SPACE_RUN.sub(" ", text)


def _ascii_only(text: str) -> str:
    """The ASCII spellings of the same marks, so both spellings meet in one form."""
    if "--" in text or " - " in text or "\t-" in text or "-\t" in text:
        text = _DASH_RUN.sub(_dash, text)
    if ".." in text or ". ." in text:
        text = _ELLIPSIS.sub("…", text)
    return text


_APOSTROPHE_TABLE = {ord(c): "'" for c in _APOSTROPHES}
_HYPHEN_TABLE = {ord(c): "-" for c in _HYPHENS}


def _next_to_cjk(text: str, start: int, end: int) -> bool:
    """Whether the nearest visible character before ``start`` or from ``end`` is CJK
    (an inline span, hidden as a private-use character by the cleanup, decides nothing)."""
    i = start - 1
    while i >= 0 and (text[i] in " \ufeff" or "\ue000" <= text[i] <= "\uf8ff"):
        i -= 1
    j = end
    while j < len(text) and (text[j] == " " or "\ue000" <= text[j] <= "\uf8ff"):
        j += 1
    return bool(
        (i >= 0 and _CJK_CHAR.match(text[i])) or (j < len(text) and _CJK_CHAR.match(text[j]))
    )


def _latin_only(m: re.Match[str]) -> str:
    """Full-width punctuation, curly double quotes and dashes next to Chinese or Japanese
    stay (their G2Ps read them); elsewhere they become what the G2P expects."""
    if _next_to_cjk(m.string, m.start(), m.end()):
        return m.group(0)
    out = []
    for ch in m.group(0):
        if ch in _FULLWIDTH_PUNCT:
            out.append(_FULLWIDTH_PUNCT[ch])
        elif ch in _DOUBLE_QUOTES:
            out.append('"')
        elif ch == "–":
            out.append(" — ")  # a spaced en dash is a pause; a range was folded already
        else:
            out.append(ch)
    folded = "".join(out)
    return folded.rstrip(" ") if m.end() == len(m.string) else folded


def _dash(m: re.Match[str]) -> str:
    """A dash used as a pause: one spaced em dash (the form misaki gives ``a - b``)."""
    text = m.string
    before = text[m.start() - 1] if m.start() > 0 else ""
    after = text[m.end()] if m.end() < len(text) else ""
    if _next_to_cjk(text, m.start(), m.end()):
        return "—"
    if not before or before == "\n":
        return "— " if after else "—"
    return " — " if after and after != "\n" else " —"
