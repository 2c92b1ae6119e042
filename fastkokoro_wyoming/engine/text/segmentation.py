"""Pure segmentation: phoneme strings -> segments that fit the model.

Text is cut at sentence boundaries first (by the caller), then, when a sentence's
phonemes do not fit, at phrase punctuation, then at word boundaries; a single
"word" longer than the model's capacity is the only thing cut mid-way. Nothing is
ever truncated: every phoneme ends up in exactly one segment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from ..settings import Strategy, choices

STRATEGIES = choices(Strategy)

_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*\s*$")
_PHRASE_END = re.compile(r"[,;:—…]+\s+|[.!?]+\s+")
_SPACE = re.compile(r"\s+")


def _cut_points(ps: str, pattern: re.Pattern[str]) -> list[int]:
    return [m.end() for m in pattern.finditer(ps) if 0 < m.end() < len(ps)]


def _last_at_most(points: list[int], limit: int) -> int | None:
    best = None
    for p in points:
        if p > limit:
            break
        best = p
    return best


def split_head(ps: str, limit: int) -> tuple[str, str]:
    """The longest head of ``ps`` (at most ``limit``) that ends at a good boundary, and the rest."""
    ps = ps.strip()
    if len(ps) <= limit:
        return ps, ""
    cut = _last_at_most(_cut_points(ps, _PHRASE_END), limit)
    if cut is None or cut < limit // 3:  # a phrase cut that leaves a tiny piece: try words
        word_cut = _last_at_most(_cut_points(ps, _SPACE), limit)
        cut = word_cut if word_cut is not None else cut
    if cut is None:
        cut = limit  # one "word" longer than the model: the only mid-word cut
    return ps[:cut].strip(), ps[cut:].strip()


def split_to_fit(ps: str, limit: int) -> list[str]:
    """Split ``ps`` into pieces of at most ``limit`` characters, each at the best boundary."""
    pieces: list[str] = []
    rest = ps.strip()
    while rest:
        head, rest = split_head(rest, limit)
        if head:
            pieces.append(head)
    return pieces


def ends_sentence(ps: str) -> bool:
    """Whether a segment ends a sentence (not a cut at a comma or between words)."""
    return bool(_SENTENCE_END.search(ps))


def split_phrases(ps: str) -> list[str]:
    """Cut at phrase punctuation (commas, semicolons, dashes) as well as sentence ends."""
    points = _cut_points(ps, _PHRASE_END)
    bounds = [0, *points, len(ps)]
    return [ps[a:b].strip() for a, b in zip(bounds, bounds[1:], strict=False) if ps[a:b].strip()]


def segment(
    sentences: Iterable[str],
    *,
    strategy: str,
    capacity: int,
    first_tokens: int = 32,
    chunk_tokens: int = 200,
) -> Iterator[str]:
    """Sentence phoneme strings -> segment phoneme strings (lazy; fits ``capacity``).

    * ``sentence``: one segment per sentence.
    * ``phrase``: one per phrase (commas and the like split too).
    * ``adaptive``: a first sentence longer than 1.5 × ``first_tokens`` is cut so the
      first segment is at most ``first_tokens`` long and audio starts fast; each next
      one may be twice as long until a sentence boundary is reached, so the player never
      runs dry while the model is still slower than real time on the first words; after
      that, one segment per sentence. (A sentence barely over the budget stays whole:
      cutting it would gain little and add a join.)
    * ``chunk``: whole sentences packed greedily up to ``chunk_tokens``.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}")
    budget = min(first_tokens, capacity)
    pending = ""
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        if strategy == "phrase":
            for phrase in split_phrases(sentence):
                yield from split_to_fit(phrase, capacity)
        elif strategy == "chunk":
            limit = min(chunk_tokens, capacity)
            joined = f"{pending} {sentence}".strip() if pending else sentence
            if len(joined) <= limit:
                pending = joined
                continue
            if pending:
                yield pending
            *full, pending = split_to_fit(sentence, limit)
            yield from full
        elif strategy == "adaptive" and budget < capacity:
            rest = sentence
            while len(rest) > budget + budget // 2:
                head, rest = split_head(rest, budget)
                yield head
                budget = min(budget * 2, capacity)
            if rest:
                yield from split_to_fit(rest, capacity)
            budget = capacity  # from the first sentence boundary on: sentence-sized
        else:
            yield from split_to_fit(sentence, capacity)
    if pending:
        yield pending
