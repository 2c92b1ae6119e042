"""The one validation of a request: what a front end asks for -> :class:`Prepared`.

Both front ends, the phoneme routes and the Python API come through here, so a bad
speed, voice, language, SSML document or phoneme gets the same error (an
:class:`~.errors.EngineError` with a code and a parameter) whichever way it arrives. The
checks are cheap and run on the event loop; what needs G2P (:meth:`Requests.phonemize`)
is blocking and runs in a worker thread. Also the default-voice rule, as both catalogs
and every request use it.
"""

from __future__ import annotations

import dataclasses

from .errors import (
    EmptyText,
    InvalidPhonemes,
    InvalidRequest,
    InvalidSpeed,
    LanguageMismatch,
    TextTooLong,
    UnknownVoice,
)
from .model.voices import Voice, VoiceStore
from .serving.loudness import LoudnessTable
from .serving.meter import db_to_gain
from .serving.passages import Passage, compatible, ssml_pieces
from .serving.plan import Prepared
from .settings import EngineConfig
from .text import inline
from .text.cleanup import Pause, clean, has_speech, split_pauses
from .text.g2p import G2P
from .text.languages import LanguageTable
from .text.sentences import split_sentences
from .text.ssml import parse_ssml
from .text.vocab import Vocab
from .types import MAX_SPEED, MAX_VOLUME, MIN_SPEED, SynthesisRequest


class Requests:
    """Validation and the default-voice rule over the engine's catalog, vocabulary and
    G2P. ``loudness`` gives the per-voice gains (engine.loudness_lufs), or None when off."""

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        voices: VoiceStore,
        vocab: Vocab,
        g2p: G2P,
        languages: LanguageTable,
        loudness: LoudnessTable | None,
    ) -> None:
        self._cfg = cfg
        self._voices = voices
        self._vocab = vocab
        self._g2p = g2p
        self._languages = languages
        self._loudness = loudness

    def default_voice(self, lang: str | None = None) -> str:
        """The voice used when a request names none: the configured default, or for a
        language, that language's (the configured one if it speaks it)."""
        if lang is None:
            return self._cfg.default_voice
        code = self._languages.resolve(lang).code
        name = self._voices.default_for(code, self._cfg.default_voice)
        if name is None:
            raise UnknownVoice(f"no installed voice speaks {lang!r}", param="lang")
        return name

    def voice_for(self, voice: str | None, lang: str | None = None) -> Voice:
        """The one default-voice rule: a named voice (or blend), else ``lang``'s default,
        else the configured default. Raises UnknownVoice / UnknownLanguage."""
        code = self._languages.resolve(lang).code if lang else None
        return self._voices.resolve(voice or self.default_voice(code))

    def prepare(self, req: SynthesisRequest) -> Prepared:
        """Validate ``req`` (raises an EngineError with a code); cheap, call it on the loop.

        Speed: the request's when it gives one, else the preset's (a preset voice), else 1.
        Level: the voice's loudness gain (engine.loudness_lufs) x the preset's volume x the
        request's ``volume``, under one peak limiter."""
        if req.speed is not None and (
            isinstance(req.speed, bool)
            or not isinstance(req.speed, int | float)
            or not (MIN_SPEED <= float(req.speed) <= MAX_SPEED)
        ):
            raise InvalidSpeed(
                f"speed must be a number from {MIN_SPEED} to {MAX_SPEED}, got {req.speed!r}"
            )
        if (
            isinstance(req.volume, bool)
            or not isinstance(req.volume, int | float)
            or not 0 <= float(req.volume) <= MAX_VOLUME
        ):
            raise InvalidRequest(
                f"volume_multiplier must be a number from 0 to {MAX_VOLUME:g}, got {req.volume!r}",
                param="volume_multiplier",
            )
        if not isinstance(req.text, str) or not req.text.strip():
            raise EmptyText("input text is empty")
        limit = self._cfg.limits.max_input_chars
        if len(req.text) > limit:
            raise TextTooLong(f"input is {len(req.text)} characters; the limit is {limit}")
        lang = self._languages.resolve(req.lang) if req.lang else None
        voice = self.voice_for(req.voice, lang.code if lang else None)
        if lang is None:
            lang = self._languages.resolve(voice.lang)
        elif not self._cfg.allow_cross_language and not compatible(lang.code, voice.lang):
            raise LanguageMismatch(
                f"voice {voice.name!r} speaks {self._languages.resolve(voice.lang).locale}, "
                f"not {lang.locale}; pick a {lang.locale} voice (e.g. "
                f"{self._voices.default_for(lang.code)}) or set "
                "engine.allow_cross_language"
            )
        speed = float(req.speed) if req.speed is not None else (voice.speed or 1.0)
        pieces: tuple[str | Pause | Passage, ...]
        if req.ssml:  # one parser for both front ends; errors name line and column
            spans = parse_ssml(
                req.text, lang=lang.code, languages=self._languages, vocab=self._vocab
            )
            pieces = ssml_pieces(
                spans,
                voice=voice,
                speed=speed,
                resolve=self._voices.resolve,
                default_for=lambda code: self._voices.default_for(code, self._cfg.default_voice),
            )
        else:
            cleaned = (p if isinstance(p, Pause) else clean(p) for p in split_pauses(req.text))
            pieces = tuple(p for p in cleaned if isinstance(p, Pause) or has_speech(p))
        if not pieces:
            raise EmptyText(
                "input has no speakable text (only symbols, emoji or control characters)"
            )
        for piece in pieces:  # [word](/phonemes/) with a symbol the model lacks: refused
            texts = piece.parts if isinstance(piece, Passage) else (piece,)  # SSML text too
            for text in texts:
                if isinstance(text, str):
                    inline.check(text, self._vocab)
        loudness = self._loudness
        loud = loudness is not None and loudness.enabled
        gain = loudness.gain_for(voice) if loudness is not None else 1.0
        gain *= db_to_gain(voice.volume_db) * float(req.volume)
        level = loud or gain != 1.0
        return Prepared(pieces, voice, lang.code, speed, req.normalize, gain=gain, level=level)

    def prepare_phonemes(self, phonemes: str, voice: str | None, speed: float = 1.0) -> Prepared:
        """:meth:`prepare` for a phoneme string (``/dev/generate_from_phonemes``): every
        symbol must be in the model's vocabulary (InvalidPhonemes names the first that is not)."""
        if not isinstance(phonemes, str) or not phonemes.strip():
            raise EmptyText("phonemes are empty", param="phonemes")
        limit = self._cfg.limits.max_input_chars
        if len(phonemes) > limit:
            raise TextTooLong(
                f"phonemes are {len(phonemes)} characters; the limit is {limit}", param="phonemes"
            )
        phonemes = " ".join(phonemes.split())
        bad = inline.unknown_symbol(phonemes, self._vocab)
        if bad is not None:
            raise InvalidPhonemes(
                f"phonemes contain {inline.describe(bad)}, which is not a Kokoro phoneme",
                param="phonemes",
            )
        checked = self.prepare(SynthesisRequest("a", voice, None, speed))  # voice and speed
        return dataclasses.replace(checked, pieces=(phonemes,), normalize=False, phonemes=True)

    def phonemize(self, text: str, lang: str) -> str:
        """The phonemes the model would get for ``text`` (lexicon and inline spans applied;
        pauses left out). Blocking (G2P): call it in a worker thread. Raises InvalidRequest."""
        code = self._languages.resolve(lang).code
        if not isinstance(text, str) or not text.strip():
            raise EmptyText("text is empty", param="text")
        limit = self._cfg.limits.max_input_chars
        if len(text) > limit:
            raise TextTooLong(f"text is {len(text)} characters; the limit is {limit}", param="text")
        pieces = spoken_pieces(text)
        for piece in pieces:
            inline.check(piece, self._vocab, param="text")
        return phonemes_of(pieces, code, self._g2p, self._vocab)

    def phonemize_ids(self, text: str, lang: str) -> tuple[str, list[int]]:
        """:meth:`phonemize` and the model's ids for those phonemes (``/dev/phonemize``)."""
        phonemes = self.phonemize(text, lang)
        return phonemes, self._vocab.encode(phonemes)


def spoken_pieces(text: str) -> list[str]:
    """``text`` cleaned, without its ``[pause]`` marks: what is read aloud."""
    return [clean(p) for p in split_pauses(text) if isinstance(p, str)]


def phonemes_of(pieces: list[str], code: str, g2p: G2P, vocab: Vocab) -> str:
    """The phonemes the model gets for already checked ``pieces``, sentence by sentence
    (:meth:`Requests.phonemize`; also the builder's loudness texts, before an engine exists)."""
    return " ".join(
        vocab.keep(g2p.phonemize(s, code)) for piece in pieces for s in split_sentences(piece, code)
    )
