"""A validated request and the segments it becomes.

:class:`Prepared` is what :meth:`Engine.prepare` returns: the only validation a
request goes through. :class:`SegmentPlanner` then turns it, lazily and in a worker
thread (G2P is slow), into pauses and model-sized :class:`Segment` s.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..model.voices import Voice
from ..settings import SegmentationConfig
from ..text.cleanup import Pause
from ..text.g2p import G2P
from ..text.segmentation import ends_sentence, segment
from ..text.sentences import split_sentences
from ..text.vocab import Vocab
from ..text.words import SentenceWords, WordLabels, WordSpan, label_sentence
from ..types import SAMPLE_RATE
from .pcm import default_kernels

_LOGGER = logging.getLogger(__name__)
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
    gain: float = 1.0  # loudness normalisation x preset volume x request volume
    level: bool = False  # run the gain and peak limiter (engine/serving/meter.py)


@dataclass(frozen=True)
class Segment:
    """One model call's worth of phonemes, and whether it sits inside a sentence."""

    ids: list[int]
    phonemes: str
    joins_prev: bool = False  # continues a sentence cut before it (comma or word)
    joins_next: bool = False  # ends at such a cut, not at a sentence end
    words: tuple[WordSpan, ...] = ()  # which ids say which word (when timestamps are asked)

    def trim_join(self, audio: np.ndarray) -> np.ndarray:
        """Kokoro pads every call with ~0.3 s of silence before and ~0.45 s after the
        speech; at a cut inside a sentence that would be a 0.75 s hole. Keep a phrase
        pause's worth instead (50 ms before, 100 ms after)."""
        start, stop = self.join_bounds(audio)
        return audio if (start, stop) == (0, audio.size) else audio[start:stop]

    def join_bounds(self, audio: np.ndarray) -> tuple[int, int]:
        """The samples :meth:`trim_join` keeps (word timestamps need the start)."""
        if not (self.joins_prev or self.joins_next):
            return 0, audio.size
        speech = default_kernels().trim_bounds(audio, JOIN_SILENCE_LEVEL)
        if speech.start == speech.stop:
            return 0, audio.size
        start = max(0, speech.start - JOIN_LEAD) if self.joins_prev else 0
        stop = min(audio.size, speech.stop + JOIN_TAIL) if self.joins_next else audio.size
        return start, stop


class SegmentPlanner:
    """Prepared request -> pauses (as silence) and segments that fit the model."""

    def __init__(self, g2p: G2P, vocab: Vocab, settings: SegmentationConfig, capacity: int) -> None:
        self.g2p = g2p
        self.vocab = vocab
        self.settings = settings
        self.capacity = capacity

    def plan(
        self, prep: Prepared, words: bool = False
    ) -> Generator[Segment | np.ndarray, None, None]:
        """Lazily, so the first segment is ready before the rest is phonemized.
        ``words``: label each segment's ids with the words they say (timestamps)."""
        labels = WordLabels(self.vocab.table.__contains__) if words else None
        for piece in prep.pieces:
            if isinstance(piece, Pause):
                yield np.zeros(int(round(piece.seconds * SAMPLE_RATE)), dtype=np.float32)
                continue
            phonemes = (
                self._labelled(s, prep, labels)
                if labels is not None
                else self.vocab.keep(self.g2p.phonemize(s, prep.lang, normalize=prep.normalize))
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
                spans = labels.spans(ps) if labels is not None else ()
                if ids:
                    cut = not ends_sentence(ps)
                    yield Segment(ids, ps, joins_prev=joined, joins_next=cut, words=spans)
                    joined = cut

    def _labelled(self, sentence: str, prep: Prepared, labels: WordLabels) -> str:
        """One sentence's kept phonemes, its words queued on ``labels``. The phonemes are
        those :meth:`G2P.phonemize` gives: asking for timestamps never changes the audio."""
        normalized, phonemes, tokens = self.g2p.phonemize_tokens(
            sentence, prep.lang, normalize=prep.normalize
        )
        try:
            words = label_sentence(sentence, normalized, phonemes, tokens)
        except Exception:  # never lose audio over a timestamp: the sentence has no words
            _LOGGER.exception("Word timestamps failed for %r", sentence[:80])
            words = SentenceWords((), (-1,) * len(phonemes))
        labels.add(words, phonemes)
        return self.vocab.keep(phonemes)
