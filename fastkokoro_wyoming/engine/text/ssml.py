"""SSML input, one parser for both front ends: a document -> :class:`Span` s and pauses.

Why a parser of our own on expat rather than ElementTree: the input is untrusted, and
expat's handlers let us refuse a DTD the moment it starts (``<!DOCTYPE`` is the only
place entities can be declared, so no entity bomb and no external entity can even be
defined), never read external entities, and put a line and column on every error,
including the ones found after parsing (an unknown element, a bad ``time``, a phoneme
symbol the model lacks). No dependency is needed for that: it is what defusedxml does.

The result is a flat sequence: :class:`Span` (text and phoneme words in one language,
at one rate) and :class:`~.cleanup.Pause` (``<break>``), which the engine turns into
the same pieces a ``[pause:1s]`` text gives, so SSML adds no second pipeline.

The streaming side (Wyoming ``synthesize-chunk``) is :mod:`.ssml_sentences`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat

from ..errors import InvalidRequest, UnknownLanguage
from .cleanup import MAX_PAUSE_S, Pause
from .languages import LanguageTable
from .say_as import SayAsError, say_as
from .vocab import Vocab

MAX_DEPTH = 32  # real documents nest 2 to 5 deep
SUPPORTED = "speak p s break sub phoneme say-as prosody lang voice emphasis audio desc mark".split()
_IGNORED_CONTENT = frozenset(("desc", "mark"))  # an audio description, a bookmark: not speech
BOUNDARIES = frozenset(("p", "s"))  # sentence boundaries
_STRENGTH = {"none": 0.0, "x-weak": 0.1, "weak": 0.25, "medium": 0.5, "strong": 0.75,
             "x-strong": 1.2}  # fmt: skip
_RATES = {"x-slow": 0.6, "slow": 0.8, "medium": 1.0, "default": 1.0, "fast": 1.25,
          "x-fast": 1.6}  # fmt: skip
_TIME = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*$", re.I)
_RATE = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(%?)\s*$")
KOKORO_ALPHABETS = frozenset(("x-kokoro", "kokoro", "misaki", "x-misaki"))
# IPA -> Kokoro's symbols: misaki's one-letter diphthongs and affricates, a tie bar
# optional; then single characters written differently in plain IPA.
_IPA_PAIRS = tuple(
    (re.compile(f"{a}[\u0361\u035c\u203f]?{b}"), k)
    for a, b, k in (("a", "ɪ", "I"), ("a", "ʊ", "W"), ("e", "ɪ", "A"), ("o", "ʊ", "O"),
                    ("ə", "ʊ", "Q"), ("ɔ", "ɪ", "Y"), ("d", "ʒ", "ʤ"), ("t", "ʃ", "ʧ"))
)  # fmt: skip
_IPA_TIED = ((re.compile("t[\u0361\u035c]s"), "ʦ"), (re.compile("d[\u0361\u035c]z"), "ʣ"))
_IPA_CHARS = str.maketrans(
    {"g": "ɡ", "'": "ˈ", ":": "ː", "ɝ": "ɜɹ", "ɫ": "l", ".": None, "/": None, "[": None, "]": None}
)
_TIES = str.maketrans({"\u0361": None, "\u035c": None})


class SsmlError(InvalidRequest):
    """Malformed or unsupported SSML; the message names the line and column."""

    code = "invalid_ssml"
    param = "input"


@dataclass(frozen=True)
class PhonemeWord:
    """A ``<phoneme>``: phonemes already in Kokoro's symbols (checked), and the word."""

    phonemes: str
    written: str


@dataclass(frozen=True)
class Span:
    """Text (and phoneme words) said in one language at one rate, by one voice."""

    parts: tuple[str | PhonemeWord, ...]
    lang: str  # Kokoro's code
    rate: float = 1.0  # times the request's speed
    voice: str | None = None  # ``<voice name>``; None: the request's (or ``lang``'s)


@dataclass
class _Node:
    tag: str
    attrs: dict[str, str]
    at: tuple[int, int]  # line, column (1-based)
    children: list[_Node | str] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)


def _error(message: str, at: tuple[int, int]) -> SsmlError:
    return SsmlError(f"Malformed SSML at line {at[0]}, column {at[1]}: {message}")


def _tree(document: str) -> _Node:
    """The element tree, from expat with every DTD feature refused."""
    stripped = re.sub(r"^\s*(<\?xml[^>]*\?>)?(\s*<!--.*?-->)*\s*", "", document, flags=re.S)
    wrapped = not stripped.startswith(("<speak", "<!"))  # "<!DOCTYPE": refused below
    if wrapped:  # a fragment ("Hi <break/> there"): read as the content of <speak>
        document = f"<speak>{document}</speak>"
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    root = _Node("", {}, (1, 1))
    stack = [root]

    def position() -> tuple[int, int]:
        line, col = parser.CurrentLineNumber, parser.CurrentColumnNumber + 1
        return line, (col - len("<speak>") if wrapped and line == 1 else col)

    def refuse(what: str) -> Callable[..., Any]:
        def handler(*_: object) -> Any:
            raise _error(f"{what} is not allowed in SSML", position())

        return handler

    def start(tag: str, attrs: dict[str, str]) -> None:
        if len(stack) > MAX_DEPTH:
            raise _error(f"elements nest deeper than {MAX_DEPTH} levels", position())
        node = _Node(tag.rpartition(":")[2].lower(), attrs, position())
        stack[-1].children.append(node)
        stack.append(node)

    def end(_: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        children = stack[-1].children
        if children and isinstance(children[-1], str):
            children[-1] += data
        else:
            children.append(data)

    parser.StartDoctypeDeclHandler = refuse("a DTD (<!DOCTYPE ...>)")
    parser.EntityDeclHandler = refuse("an entity declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(document, True)
    except expat.ExpatError as err:
        line, col = err.lineno, err.offset + 1
        col = col - len("<speak>") if wrapped and line == 1 else col
        raise _error(expat.ErrorString(err.code), (line, max(col, 1))) from None
    speak = next(c for c in root.children if isinstance(c, _Node))  # expat found one
    if speak.tag != "speak":
        raise _error(f"the root element must be <speak>, not <{speak.tag}>", speak.at)
    return speak


@dataclass
class _Context:
    lang: str
    rate: float = 1.0
    voice: str | None = None


class _Builder:
    """Walks the tree, collecting spans; a change of context starts a new span."""

    def __init__(self, languages: LanguageTable, vocab: Vocab) -> None:
        self.languages = languages
        self.vocab = vocab
        self.out: list[Span | Pause] = []
        self.parts: list[str | PhonemeWord] = []
        self.context: _Context | None = None

    def add(self, part: str | PhonemeWord, ctx: _Context) -> None:
        if self.context is not None and self.context != ctx:
            self.flush()
        self.context = _Context(ctx.lang, ctx.rate, ctx.voice)
        if isinstance(part, str) and self.parts and isinstance(self.parts[-1], str):
            self.parts[-1] += part
        else:
            self.parts.append(part)

    def flush(self) -> None:
        if self.context is not None and any(
            not isinstance(p, str) or p.strip() for p in self.parts
        ):
            c = self.context
            self.out.append(Span(tuple(self.parts), c.lang, c.rate, c.voice))
        self.parts, self.context = [], None

    def pause(self, seconds: float) -> None:
        if seconds <= 0:  # strength "none": no break, the words run on
            return
        self.flush()
        if self.out and isinstance(self.out[-1], Pause):
            seconds += self.out.pop().seconds  # type: ignore[union-attr]
        self.out.append(Pause(min(seconds, MAX_PAUSE_S)))

    def walk(self, node: _Node, ctx: _Context) -> None:
        tag, at = node.tag, node.at
        if tag not in SUPPORTED:
            raise _error(f"<{tag}> is not supported; supported: {', '.join(SUPPORTED)}", at)
        ctx = self._context(node, ctx)
        if tag in BOUNDARIES:
            self.flush()
        if tag == "break":
            self.pause(_break_seconds(node))
        elif tag == "sub":
            if "alias" not in node.attrs:
                raise _error("<sub> needs an alias attribute", at)
            self.add(node.attrs["alias"], ctx)
        elif tag == "phoneme":
            self.add(self._phonemes(node, ctx.lang), ctx)
        elif tag == "say-as":
            kind = node.attrs.get("interpret-as")
            if not kind:
                raise _error("<say-as> needs an interpret-as attribute", at)
            try:
                said = say_as(node.text(), kind, node.attrs.get("format"), ctx.lang)
            except SayAsError as err:
                raise _error(str(err), at) from None
            self.add(f" {said} ", ctx)
        elif tag not in _IGNORED_CONTENT:  # containers; emphasis and audio: their content
            for child in node.children:
                if isinstance(child, str):
                    self.add(child, ctx)
                else:
                    self.walk(child, ctx)
        if tag in BOUNDARIES:
            self.flush()

    def _context(self, node: _Node, ctx: _Context) -> _Context:
        attrs, at = node.attrs, node.at
        lang = attrs.get("xml:lang") or (attrs.get("lang") if node.tag == "lang" else None)
        if node.tag == "lang" and not lang:
            raise _error("<lang> needs an xml:lang attribute", at)
        rate, voice = ctx.rate, ctx.voice
        if node.tag == "prosody" and "rate" in attrs:
            rate *= _rate(attrs["rate"], at)
        if node.tag == "voice":
            voice = (attrs.get("name") or "").strip() or None
            if voice is None:
                raise _error("<voice> needs a name attribute", at)
        code = ctx.lang
        if lang:
            try:
                language = self.languages.resolve(lang)
            except UnknownLanguage as err:
                raise _error(err.message, at) from None
            missing = self.languages.missing_module(language)
            if missing is not None:
                raise _error(f"{language.name} is not installed (missing {missing})", at)
            code = language.code
        return _Context(code, rate, voice)

    def _phonemes(self, node: _Node, lang: str) -> PhonemeWord:
        ph = node.attrs.get("ph")
        if not ph or not ph.strip():
            raise _error("<phoneme> needs a ph attribute", node.at)
        alphabet = node.attrs.get("alphabet", "ipa").strip().lower()
        if alphabet == "ipa":
            ph = ipa_to_kokoro(ph, lang)
        elif alphabet not in KOKORO_ALPHABETS:
            raise _error(
                f"phoneme alphabet {alphabet!r} is not supported; use ipa or x-kokoro", node.at
            )
        ph = " ".join(ph.split())
        unknown = [c for c in dict.fromkeys(ph) if c != " " and c not in self.vocab.table]
        if unknown:
            names = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown)
            raise _error(
                f"phoneme symbol(s) {names} in {node.attrs['ph']!r} are not in Kokoro's vocabulary",
                node.at,
            )
        return PhonemeWord(ph, " ".join(node.text().split()))


def ipa_to_kokoro(ipa: str, lang: str) -> str:
    """Plain IPA in Kokoro's symbols: misaki's one-letter diphthongs (aɪ -> I), the
    affricates (tʃ -> ʧ), ASCII look-alikes (g, ', :); an English r is ɹ."""
    for pattern, kokoro in _IPA_PAIRS + _IPA_TIED:
        ipa = pattern.sub(kokoro, ipa)
    ipa = ipa.translate(_IPA_CHARS).translate(_TIES)
    return ipa.replace("r", "ɹ") if lang in ("a", "b") else ipa


def _break_seconds(node: _Node) -> float:
    if node.children and node.text().strip():
        raise _error("<break> must be empty", node.at)
    time = node.attrs.get("time")
    if time is not None:
        m = _TIME.match(time)
        if m is None:
            raise _error(f"break time {time!r} is not a duration like 500ms or 1.5s", node.at)
        seconds = float(m.group(1)) / (1000 if m.group(2).lower() == "ms" else 1)
        if seconds > MAX_PAUSE_S:
            raise _error(f"break time {time!r} is over the {MAX_PAUSE_S:g} s limit", node.at)
        return seconds
    strength = node.attrs.get("strength", "medium").strip().lower()
    if strength not in _STRENGTH:
        raise _error(f"break strength {strength!r} is not one of: {', '.join(_STRENGTH)}", node.at)
    return _STRENGTH[strength]


def _rate(value: str, at: tuple[int, int]) -> float:
    """A keyword, a percentage of the current rate ("80%", "+20%") or a multiplier."""
    key = value.strip().lower()
    if key in _RATES:
        return _RATES[key]
    m = _RATE.match(key)
    if m is None:
        raise _error(f"prosody rate {value!r} is not a keyword, a percentage or a number", at)
    number = float(m.group(1))
    if m.group(2):
        number = 1 + number / 100 if m.group(1)[0] in "+-" else number / 100
    if number <= 0:
        raise _error(f"prosody rate {value!r} must be above zero", at)
    return number


def parse_ssml(
    document: str, *, lang: str, languages: LanguageTable, vocab: Vocab
) -> tuple[Span | Pause, ...]:
    """Spans and pauses of ``document``; ``lang`` (a Kokoro code) is the request's
    language. Raises :class:`SsmlError` naming the line and column of the problem."""
    builder = _Builder(languages, vocab)
    builder.walk(_tree(document), _Context(lang))
    builder.flush()
    return tuple(builder.out)
