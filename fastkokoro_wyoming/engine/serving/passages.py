"""SSML spans as pieces of a :class:`~.plan.Prepared` request, and their sentences.

A plain request's pieces are text and pauses. An SSML request's are pauses and
:class:`Passage` s: text and phoneme words in one language, with the voice and speed
that differ from the request's (``<lang>``, ``<voice>``, ``<prosody rate>``). The
planner cuts both kinds into the same segments, so SSML is no second pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..model.voices import Voice
from ..text.cleanup import Pause, clean, has_speech
from ..text.segmentation import ends_sentence
from ..text.sentences import split_sentences
from ..text.ssml import PhonemeWord, Span
from ..types import MAX_SPEED, MIN_SPEED

Part = str | PhonemeWord
_LEADING_END = re.compile(r"\s*[.!?…。！？]+[\"'”’»)\]]*(?=\s|$)")


@dataclass(frozen=True)
class Passage:
    """Cleaned text parts and phoneme words, read with ``lang``'s G2P; ``voice`` and
    ``speed`` are None where the request's apply."""

    parts: tuple[Part, ...]
    lang: str
    voice: Voice | None = None
    speed: float | None = None


def compatible(requested: str, voice_lang: str) -> bool:
    """American and British voices read either accent natively."""
    return requested == voice_lang or {requested, voice_lang} == {"a", "b"}


def ssml_pieces(
    spans: tuple[Span | Pause, ...],
    *,
    voice: Voice,
    speed: float,
    resolve: Callable[[str], Voice],
    default_for: Callable[[str], str | None],
) -> tuple[Passage | Pause, ...]:
    """Spans -> passages. A span in a language the request's voice does not speak is
    read by that language's default voice when one is installed (else by the request's
    voice, with the span's G2P); ``<voice name>`` always wins. Raises UnknownVoice."""
    out: list[Passage | Pause] = []
    for span in spans:
        if isinstance(span, Pause):
            out.append(span)
            continue
        parts = tuple(p for p in (_cleaned(p) for p in span.parts) if p)
        if not any(isinstance(p, PhonemeWord) or has_speech(p) for p in parts):
            continue
        chosen: Voice | None = None
        if span.voice is not None:
            chosen = resolve(span.voice)
        elif not compatible(span.lang, voice.lang):
            name = default_for(span.lang)
            chosen = resolve(name) if name is not None else None
        rate = min(MAX_SPEED, max(MIN_SPEED, speed * span.rate))
        out.append(
            Passage(
                parts,
                span.lang,
                None if chosen is None or chosen.name == voice.name else chosen,
                None if span.rate == 1.0 else rate,
            )
        )
    return tuple(out)


def _cleaned(part: Part) -> Part:
    return part if isinstance(part, PhonemeWord) else clean(part)


def passage_sentences(passage: Passage) -> Iterator[list[Part]]:
    """The passage's sentences, each a list of parts: text is split with the same rules
    as plain text, and a phoneme word belongs to the sentence around it."""
    current: list[Part] = []
    for part in passage.parts:
        if isinstance(part, PhonemeWord):
            current.append(part)
            continue
        end = _LEADING_END.match(part)
        if end is not None and current:  # "<phoneme .../>. Next": the stop ends it
            current.append(end.group().strip())
            yield current
            current, part = [], part[end.end() :]
        pieces = split_sentences(part, passage.lang) or ([part] if part.strip() else [])
        for i, piece in enumerate(pieces):
            current.append(piece)
            if i < len(pieces) - 1 or ends_sentence(piece):
                yield current
                current = []
    if current:
        yield current
