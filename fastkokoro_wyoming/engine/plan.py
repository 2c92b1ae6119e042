"""A validated request and the segments it becomes.

:class:`Prepared` is what :meth:`Engine.prepare` returns: the only validation a
request goes through. :class:`SegmentPlanner` then turns it, lazily and in a worker
thread (G2P is slow), into pauses and model-sized :class:`Segment` s.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .g2p import G2P
from .pcm import default_kernels
from .segmentation import ends_sentence, segment
from .sentences import split_sentences
from .settings import SegmentationConfig
from .text import Pause
from .tokens import Vocab
from .types import SAMPLE_RATE
from .voices import Voice

JOIN_SILENCE_LEVEL = 1e-3  # -60 dBFS
JOIN_LEAD = SAMPLE_RATE * 50 // 1000
JOIN_TAIL = SAMPLE_RATE * 100 // 1000


@dataclass(frozen=True)
class Prepared:
    """A validated request: everything needed to start producing audio."""

    pieces: tuple[str | Pause, ...]
    voice: Voice
    lang: str
    speed: float
    normalize: bool


@dataclass(frozen=True)
class Segment:
    """One model call's worth of phonemes, and whether it sits inside a sentence."""

    ids: list[int]
    phonemes: str
    joins_prev: bool = False  # continues a sentence cut before it (comma or word)
    joins_next: bool = False  # ends at such a cut, not at a sentence end

    def trim_join(self, audio: np.ndarray) -> np.ndarray:
        """Kokoro pads every call with ~0.3 s of silence before and ~0.45 s after the
        speech; at a cut inside a sentence that would be a 0.75 s hole. Keep a phrase
        pause's worth instead (50 ms before, 100 ms after)."""
        if not (self.joins_prev or self.joins_next):
            return audio
        speech = default_kernels().trim_bounds(audio, JOIN_SILENCE_LEVEL)
        if speech.start == speech.stop:
            return audio
        start = max(0, speech.start - JOIN_LEAD) if self.joins_prev else 0
        stop = min(audio.size, speech.stop + JOIN_TAIL) if self.joins_next else audio.size
        return audio[start:stop]


class SegmentPlanner:
    """Prepared request -> pauses (as silence) and segments that fit the model."""

    def __init__(self, g2p: G2P, vocab: Vocab, settings: SegmentationConfig, capacity: int) -> None:
        self.g2p = g2p
        self.vocab = vocab
        self.settings = settings
        self.capacity = capacity

    def plan(self, prep: Prepared) -> Iterator[Segment | np.ndarray]:
        """Lazily, so the first segment is ready before the rest is phonemized."""
        for piece in prep.pieces:
            if isinstance(piece, Pause):
                yield np.zeros(int(round(piece.seconds * SAMPLE_RATE)), dtype=np.float32)
                continue
            phonemes = (
                self.vocab.keep(self.g2p.phonemize(s, prep.lang, normalize=prep.normalize))
                for s in split_sentences(piece, prep.lang)
            )
            joined = False
            for ps in segment(
                phonemes,
                strategy=self.settings.strategy,
                capacity=self.capacity,
                first_tokens=self.settings.first_segment_tokens,
                chunk_tokens=self.settings.chunk_tokens,
            ):
                ids = self.vocab.encode(ps)
                if ids:
                    cut = not ends_sentence(ps)
                    yield Segment(ids, ps, joins_prev=joined, joins_next=cut)
                    joined = cut
