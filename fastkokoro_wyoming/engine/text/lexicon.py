"""The user's lexicon (``engine.lexicon``): words said the way the user wrote them down.

A mispronounced name, brand or acronym comes back in every reply; a lexicon fixes it
for good. The file is YAML, a mapping from a language (any code the config accepts:
``en-US``, ``a``, ``fr``) to ``{word: phonemes}``::

    en-US:
      HVAC: ˈAʧvæk
      Hyundai: hˈʌndA

Matching is whole-word and case-insensitive (a word of Chinese or Japanese script
matches anywhere: those languages write no spaces). A match becomes the inline span
``[word](/phonemes/)`` (:mod:`.inline`) before the reading rules run, so an entry wins
over them ("St." or "km" included) and word timestamps still name the word as written.

The file is checked when the engine starts: a symbol the model has no id for, an
unknown language or a malformed entry is one :class:`ConfigError` line naming it, and
the daemon refuses to start. It is then re-read when it changes: the G2P threads call
:meth:`Lexicon.apply`, which looks at the file's mtime at most once a second (one
``stat``, in that worker thread, never on the event loop). A changed file that no
longer passes the check is logged and the last good lexicon stays in use.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import yaml

from ..errors import ConfigError, UnknownLanguage
from . import inline
from .languages import LanguageTable
from .typography import fold_typography
from .vocab import Vocab

_LOGGER = logging.getLogger(__name__)
CHECK_INTERVAL_S = 1.0
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
# a word boundary that ignores CJK characters: "iPhone" matches in "用iPhone打"
_BEFORE = r"(?<![^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff])"
_AFTER = r"(?![^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff])"


@dataclass(frozen=True)
class LanguageEntries:
    """One language's entries and the one regex that finds them all."""

    phonemes: Mapping[str, str]  # casefolded word -> phonemes
    pattern: re.Pattern[str]


def _compile(entries: dict[str, str]) -> LanguageEntries:
    alternatives = []
    for word in sorted(entries, key=len, reverse=True):  # longest first: "Home Assistant"
        before = "" if _CJK.match(word[0]) else _BEFORE
        after = "" if _CJK.match(word[-1]) else _AFTER
        alternatives.append(before + re.escape(word) + after)
    pattern = re.compile("|".join(alternatives), re.IGNORECASE)
    return LanguageEntries(MappingProxyType(entries), pattern)


def parse(
    raw: object, vocab: Vocab, languages: LanguageTable, source: str
) -> dict[str, LanguageEntries]:
    """The lexicon's entries by Kokoro language code; ConfigError (one line) if any is bad."""
    where = f"engine.lexicon ({source})"
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must map languages (e.g. en-US) to {{word: phonemes}}")
    by_code: dict[str, dict[str, str]] = {}
    for lang, words in raw.items():
        try:
            code = languages.resolve(str(lang)).code
        except UnknownLanguage:
            raise ConfigError(
                f"{where}: {lang!r} is not a language; use one of {languages.valid()}"
            ) from None
        if words is None:
            continue
        if not isinstance(words, dict):
            raise ConfigError(f"{where}: {lang}: must map words to phonemes")
        table = by_code.setdefault(code, {})
        for word, phonemes in words.items():
            entry = f"{where}: {lang}: {word!r}"
            if not isinstance(word, str | int) or not str(word).strip():
                raise ConfigError(f"{entry}: the word must be text")
            if not isinstance(phonemes, str) or not phonemes.strip():
                raise ConfigError(f"{entry}: the phonemes must be a non-empty string")
            phonemes = unicodedata.normalize("NFC", phonemes.strip().strip("/"))
            bad = inline.unknown_symbol(phonemes, vocab)
            if bad is not None:
                raise ConfigError(
                    f"{entry}: {inline.describe(bad)} is not a Kokoro phoneme "
                    "(POST /dev/phonemize shows what a word becomes)"
                )
            if any(c in phonemes for c in "/)]"):
                raise ConfigError(f"{entry}: phonemes may not contain '/', ')' or ']'")
            key = fold_typography(unicodedata.normalize("NFC", str(word).strip()))
            table[key.casefold()] = phonemes
    return {code: _compile(table) for code, table in by_code.items() if table}


def load(path: Path, vocab: Vocab, languages: LanguageTable) -> dict[str, LanguageEntries]:
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except OSError as err:
        raise ConfigError(f"engine.lexicon: cannot read {path}: {err.strerror or err}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        detail = " ".join(str(err).split())
        raise ConfigError(f"engine.lexicon: {path} is not valid YAML: {detail}") from None
    return parse(raw, vocab, languages, str(path))


class Lexicon:
    """The loaded lexicon; :meth:`apply` re-reads the file when it has changed."""

    def __init__(self, path: Path, vocab: Vocab, languages: LanguageTable) -> None:
        """Load and check ``path`` now; raises ConfigError (the daemon refuses to start)."""
        self.path = path
        self._vocab = vocab
        self._languages = languages
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._entries = load(path, vocab, languages)
        self._checked = time.monotonic()
        self.reloads = 0

    @property
    def entries(self) -> Mapping[str, LanguageEntries]:
        return self._entries

    def size(self) -> int:
        return sum(len(e.phonemes) for e in self._entries.values())

    def apply(self, text: str, code: str) -> str:
        """``text`` with every entry of language ``code`` written as an inline span
        (spans already in the text are left alone)."""
        self._maybe_reload()
        entries = self._entries.get(code)
        if entries is None:
            return text

        def replace(m: re.Match[str]) -> str:
            phonemes = entries.phonemes.get(m.group(0).casefold())
            return m.group(0) if phonemes is None else inline.link(m.group(0), phonemes)

        return inline.map_text(text, lambda run: entries.pattern.sub(replace, run))

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_INTERVAL_S or not self._lock.acquire(blocking=False):
            return  # checked recently, or another thread is checking right now
        try:
            self._checked = now
            stamp = self._stat()
            if stamp is None or stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                self._entries = load(self.path, self._vocab, self._languages)
            except ConfigError as err:
                _LOGGER.error("Lexicon not reloaded, the last good one stays: %s", err)
                return
            self.reloads += 1
            _LOGGER.info("Lexicon reloaded from %s (%d entries)", self.path, self.size())
        finally:
            self._lock.release()
