"""Kokoro's nine languages: one-letter codes, locale aliases, and what each needs.

Both front ends resolve languages through :class:`LanguageTable`, so ``en-US``,
``en_us``, ``American`` and ``a`` all mean the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UnknownLanguage


@dataclass(frozen=True)
class Language:
    """One of Kokoro's nine languages: its code, locale and aliases."""

    code: str  # Kokoro's pipeline letter
    locale: str  # BCP-47 code shown to users (HA voice list, /v1/audio/voices)
    name: str
    aliases: tuple[str, ...]
    extra: str | None = None  # pip extra that holds its G2P packages, if optional


LANGUAGES: tuple[Language, ...] = (
    Language("a", "en-US", "American English", ("en-us", "en", "american", "english")),
    Language("b", "en-GB", "British English", ("en-gb", "british", "en-uk")),
    Language("j", "ja-JP", "Japanese", ("ja", "ja-jp", "jp", "japanese"), extra="ja"),
    Language(
        "z",
        "zh-CN",
        "Mandarin Chinese",
        ("zh", "zh-cn", "zh-hans", "cmn", "cmn-cn", "mandarin", "chinese"),
        extra="zh",
    ),
    Language("e", "es-ES", "Spanish", ("es", "es-es", "spanish")),
    Language("f", "fr-FR", "French", ("fr", "fr-fr", "french")),
    Language("h", "hi-IN", "Hindi", ("hi", "hi-in", "hindi")),
    Language("i", "it-IT", "Italian", ("it", "it-it", "italian")),
    Language("p", "pt-BR", "Brazilian Portuguese", ("pt", "pt-br", "portuguese")),
)


class LanguageTable:
    """Case-insensitive lookup of any alias (``_`` or ``-``) to a :class:`Language`."""

    def __init__(self, languages: tuple[Language, ...] = LANGUAGES) -> None:
        self.languages = languages
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


def _key(alias: str) -> str:
    return alias.strip().lower().replace("_", "-")
