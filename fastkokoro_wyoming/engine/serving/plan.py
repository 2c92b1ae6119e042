"""A validated request and the segments it becomes.

:class:`Prepared` is what :meth:`Engine.prepare` returns: the only validation a
request goes through. :class:`SegmentPlanner` then turns it, lazily and in a worker
thread (G2P is slow), into pauses and model-sized :class:`Segment` s.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from ..model.voices import Voice
from ..settings import SegmentationConfig
from ..text.cleanup import Pause, has_speech
from ..text.g2p import G2P
from ..text.segmentation import ends_sentence, segment
from ..text.sentences import split_sentences
from ..text.ssml import PhonemeWord
from ..text.vocab import Vocab
from ..text.words import SentenceWords, WordLabels, WordSpan, label_sentence
from ..types import SAMPLE_RATE
from .passages import Passage, passage_sentences
from .pcm import default_kernels

_LOGGER = logging.getLogger(__name__)
JOIN_SILENCE_LEVEL = 1e-3  # -60 dBFS
JOIN_LEAD = SAMPLE_RATE * 50 // 1000
JOIN_TAIL = SAMPLE_RATE * 100 // 1000
_PHONEME_SENTENCES = re.compile(r"(?<=[.!?…])\s+")  # phonemes have no capitals to look for
_CLINGS = frozenset(",.;:!?…")


@dataclass(frozen=True)
class Prepared:
    """A validated request: everything needed to start producing audio."""

    pieces: tuple[str | Pause | Passage, ...]  # Passage: SSML (serving/passages.py)
    voice: Voice
    lang: str
    speed: float
    normalize: bool
    phonemes: bool = False  # the pieces are phonemes already (POST /dev/generate_from_phonemes)
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
    voice: Voice | None = None  # SSML <lang>/<voice>: another voice than the request's
    speed: float | None = None  # SSML <prosody rate>: another speed than the request's

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
            if isinstance(piece, Passage):
                phonemes = (
                    self._passage_sentence(s, piece.lang, prep, labels)
                    for s in passage_sentences(piece)
                )
                voice, speed = piece.voice, piece.speed
            elif prep.phonemes:  # /dev/generate_from_phonemes: spoken as given
                phonemes = (self.vocab.keep(s) for s in _PHONEME_SENTENCES.split(piece))
                voice = speed = None
            else:
                phonemes = (
                    self._phonemes(s, prep.lang, prep, labels)
                    for s in split_sentences(piece, prep.lang)
                )
                voice = speed = None
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
                    yield Segment(ids, ps, joined, cut, spans, voice, speed)
                    joined = cut

    def _phonemes(self, sentence: str, lang: str, prep: Prepared, labels: WordLabels | None) -> str:
        if labels is not None:
            return self._labelled(sentence, lang, prep, labels)
        return self.vocab.keep(self.g2p.phonemize(sentence, lang, normalize=prep.normalize))

    def _passage_sentence(
        self, parts: list[str | PhonemeWord], lang: str, prep: Prepared, labels: WordLabels | None
    ) -> str:
        """An SSML sentence: its text parts through G2P, its phoneme words as given."""
        out = []
        for part in parts:
            if isinstance(part, PhonemeWord):
                if labels is not None:
                    marks = tuple(-1 if c.isspace() else 0 for c in part.phonemes)
                    labels.add(SentenceWords((part.written,), marks), part.phonemes)
                out.append(part.phonemes)
            elif not has_speech(part):  # punctuation around a phoneme word
                kept = self.vocab.keep(part)
                if labels is not None:
                    labels.add(SentenceWords((), (-1,) * len(kept)), kept)
                out.append(kept)
            else:
                out.append(self._phonemes(part, lang, prep, labels))
        joined = ""
        for p in out:  # "word ," -> "word,": punctuation sticks to what it follows
            joined += p if not joined or p[:1] in _CLINGS else f" {p}"
        return joined.strip()

    def _labelled(self, sentence: str, lang: str, prep: Prepared, labels: WordLabels) -> str:
        """One sentence's kept phonemes, its words queued on ``labels``. The phonemes are
        those :meth:`G2P.phonemize` gives: asking for timestamps never changes the audio."""
        normalized, phonemes, tokens = self.g2p.phonemize_tokens(
            sentence, lang, normalize=prep.normalize
        )
        try:
            words = label_sentence(sentence, normalized, phonemes, tokens)
        except Exception:  # never lose audio over a timestamp: the sentence has no words
            _LOGGER.exception("Word timestamps failed for %r", sentence[:80])
            words = SentenceWords((), (-1,) * len(phonemes))
        labels.add(words, phonemes)
        return self.vocab.keep(phonemes)
