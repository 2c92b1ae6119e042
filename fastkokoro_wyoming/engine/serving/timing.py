"""Word timestamps, audio side: token durations -> seconds of the audio as emitted.

Kokoro predicts a duration per token, in frames (600 samples, 25 ms, for the classic
model: its audio is exactly ``600 * sum(durations)`` samples; 480 for the fixed-bucket
export, whose runtime trims the same way). A word's start is the first frame of its
first id and its end the last frame of its last id, both moved by the decoder's lead
(``ONSET_LEAD_SAMPLES``); speed is already in the durations.

The audio a listener gets is not the model's: a segment cut inside a sentence loses
most of its edge silence (``head_trim`` samples before the first one emitted), pauses
and the gap between segments add silence. :class:`WordClock` follows the chunks as
the stream yields them and places each segment's words at its first emitted sample,
so every time is in the output's own clock; a word is reported with the chunk whose
audio finishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..text.words import WordSpan
from ..types import SAMPLE_RATE

# A token's sound starts ~2-3 frames before its slot in the duration grid (the decoder's
# convolutions look ahead): speech onset by level 40-85 ms before the first word's slot
# on 5 sentences, 81 ms median against pocketsphinx on 6 others (Kokoro's own pipeline
# moves its first word 3 frames earlier). Times are moved 62.5 ms earlier.
ONSET_LEAD_SAMPLES = 1500


@dataclass(frozen=True)
class WordTiming:
    """One word as written, and when it is heard (seconds from the start of the audio)."""

    word: str
    start: float
    end: float

    def as_dict(self) -> dict[str, float | str]:
        """Kokoro-FastAPI's shape: ``{"word", "start_time", "end_time"}``."""
        return {"word": self.word, "start_time": self.start, "end_time": self.end}


@dataclass(frozen=True)
class TimedChunk:
    """A chunk of float32 audio and the words that finished in it (absolute times)."""

    audio: np.ndarray
    words: tuple[WordTiming, ...]


@dataclass(frozen=True)
class Emitted:
    """One chunk a stream yields and where its samples came from, so the word clock
    needs no state from the stream: ``source`` is the render or pause it came from,
    ``from_source`` how many of its samples are that source's (the rest is the gap
    after a segment), ``words``/``timing`` that source's words and their timing, and
    ``finished`` whether the source has nothing more to give."""

    audio: np.ndarray
    source: object
    from_source: int
    words: Sequence[WordSpan] = ()
    timing: SegmentTiming | None = None
    finished: bool = True


@dataclass(frozen=True)
class SegmentTiming:
    """How a segment's ids map to its emitted samples."""

    durations: np.ndarray  # frames per token, both pads included
    samples_per_frame: int
    head_trim: int = 0  # samples of the model's audio before the first one emitted

    def bounds(self, span: WordSpan) -> tuple[int, int]:
        """Samples ``[start, end)`` of ``span`` in the segment's emitted audio."""
        edges = np.concatenate([[0], np.cumsum(np.asarray(self.durations, np.int64))])
        first = min(span.first + 1, edges.size - 1)  # id k is token k + 1 (pad first)
        last = min(span.last + 2, edges.size - 1)
        spf, shift = self.samples_per_frame, self.head_trim + ONSET_LEAD_SAMPLES
        return int(edges[first]) * spf - shift, int(edges[last]) * spf - shift


def approximate_durations(n_ids: int, audio: np.ndarray, samples_per_frame: int) -> np.ndarray:
    """Durations for a model that does not report them (a classic model with windowed
    decoding off): the edge silence to the pads, the speech shared evenly by the ids.
    Word times are then estimates, good to a word or so, not to a phoneme."""
    from .pcm import default_kernels

    frames = max(1, int(np.ceil(audio.size / samples_per_frame)))
    speech = default_kernels().trim_bounds(audio, 1e-3)
    lead = speech.start // samples_per_frame if speech.stop > speech.start else 0
    tail = (audio.size - speech.stop) // samples_per_frame if speech.stop > speech.start else 0
    body = max(frames - lead - tail, n_ids)
    per_id = np.full(n_ids, body // max(n_ids, 1), np.int64)
    per_id[: body - int(per_id.sum())] += 1
    return np.concatenate([[lead], per_id, [max(frames - lead - body, 0)]]).astype(np.int64)


class WordClock:
    """Follows a stream's chunks and says which words each chunk finished.

    ``advance`` is given each chunk as :class:`Emitted`: its audio, what it came from
    (a render, or a pause), how many of its samples came from that source, that source's
    words and timing, and whether the source is done.
    """

    def __init__(self, rate: int = SAMPLE_RATE) -> None:
        self.rate = rate
        self.emitted = 0  # samples yielded so far
        self.source: object = None
        self.source_end = 0  # last sample (exclusive) the current source emitted
        self.placed = False
        self.pending: list[tuple[str, int, int]] = []  # (word, start, end) samples, in order
        self.open_starts: dict[int, int] = {}  # words cut across segments: their start

    def advance(self, chunk: Emitted) -> tuple[WordTiming, ...]:
        """The words ``chunk`` finished, in order, at their times in the output."""
        out: list[WordTiming] = []
        if chunk.source is not self.source:  # a new segment or pause: the last one is done
            out += self._release(flush=True)
            self.source, self.placed = chunk.source, False
        origin = self.emitted
        if chunk.words and chunk.timing is not None and not self.placed:
            self.placed = True
            self._place(chunk.words, chunk.timing, origin)
        self.source_end = origin + chunk.from_source
        self.emitted += chunk.audio.size
        out += self._release(flush=chunk.finished)
        return tuple(out)

    def finish(self) -> tuple[WordTiming, ...]:
        """Words not reported yet (a segment whose last window was all trimmed silence)."""
        return tuple(self._release(flush=True))

    def _place(self, words: Sequence[WordSpan], timing: SegmentTiming, origin: int) -> None:
        for span in words:
            start, end = timing.bounds(span)
            start, end = origin + max(start, 0), origin + max(end, 0)
            if not span.closes:
                self.open_starts.setdefault(span.index, start)
                continue
            start = self.open_starts.pop(span.index, start)
            self.pending.append((span.text, start, max(end, start)))

    def _release(self, flush: bool) -> list[WordTiming]:
        """Words whose end the audio has passed (all of them when ``flush``), in order;
        times are kept inside the audio their segment emitted."""
        out = []
        while self.pending and (flush or self.pending[0][2] <= self.source_end):
            text, start, end = self.pending.pop(0)
            end = min(end, self.source_end)
            start = min(start, end)
            out.append(WordTiming(text, round(start / self.rate, 3), round(end / self.rate, 3)))
        return out
