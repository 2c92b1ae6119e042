"""Instance-norm statistics for windowed decoding: a prior per voice and style row.

The generator's 44 instance norms normalise over the whole utterance. A window cannot see
the utterance, and its own statistics pump the loudness and click at joins; the segment's
exact statistics would need the whole generator run first (the cost windowing avoids).
What works is a *prior*: the statistics depend mostly on the voice and on the style row
(Kokoro picks row ``n_ids - 1`` of the voice table, so rows differ by utterance length), and
little on the words. So each voice is calibrated once: a few short texts are decoded with
the style row *forced* to each anchor row (any text works with any row), their per-channel
means and variances are pooled, and rows between anchors are interpolated linearly.

A blend of voices (a weighted mix of their tables) takes the same weighted mix of their
priors: measured close to calibrating the blend itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ...text.vocab import Vocab
from .decoder import WindowedDecoder

_LOGGER = logging.getLogger(__name__)

STYLE_ROWS = 510
# Anchor rows (0-based rows of the [510, 256] table), denser where real segments live
# (sentences of 10-200 phonemes). Interpolating between them costs < 0.1 dB log-mel against
# calibrating the exact row (bench/windowed_quality.py); each anchor costs ~5 s of CPU.
DEFAULT_ANCHORS = (8, 48, 128, 256, 509)
DEFAULT_TEXTS = 3  # calibration texts per anchor
# Any voice after the first (the default voice, calibrated as above): 3 anchors x 2 texts
# = 6 decodes instead of 15, +0.16 dB log-mel over the full calibration on held-out text
# (bench/priors_bench.py, bench/results/priors.md; transferring the first voice's row curve
# measured worse, +0.7 dB).
QUICK_ANCHORS = (24, 80, 256)
QUICK_TEXTS = (1, 2)  # indices into calibration_ids(lang, DEFAULT_TEXTS)
FORMAT_VERSION = 1

# Calibration texts (phonemes, what misaki/espeak give for them): a question, a statement
# with a number, and a calm sentence, so loud/quiet and voiced/unvoiced material are mixed.
_ENGLISH = (
    "kˌʊd ju tˈɛl mˌi ðə wˈA tə ðə stˈAʃən, plˈiz?",
    "sˈɛvən lˈɑɹʤ bˈɑksᵻz əɹˈIvd ˌɔn tˈuzdˌA, ʤˈʌst ˈæftəɹ ðə hˈɛvi ɹˈAn stˈɑpt.",
    "ʃˌi lˈæft, ænd ðˈɛn kwˈIətli ˈOpᵊnd ði ˈOld wˈʊdᵊn wˈɪndO.",
)
CALIBRATION_PHONEMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "a": _ENGLISH,
        "b": _ENGLISH,
        "e": ("el pekˈeɲo pˈero kˈore poɾ el pˈaɾke kˈaða maɲˈana.",),
        "f": ("nuz avˈɔ̃ vizitˈe lə myzˈe avˌɑ̃ lə deʒønˈe.",),
        "h": ("ˈaːɟ mˈɔːsəm bˈʌhʊt ˈʌcʰcʰaː hɛː ɔːɾ hˌəm bˈaːhəɾ ɟˈaː ɾˌəheː hɛ̃.",),
        "i": ("domˈanɪ andjˈamo al mˈare kon i nˌɔstrɪ amˈiʧɪ.",),
        "p": ("ˌæmɐ̃ɲˈɐ̃ vˌɐ̃mʊz vˌiaʒˈar pˌaɾæ a prˈIæ koŋ a fˌæmˈiljæ.",),
        "j": ("asɨ βa tomodaʨi to iʔɕoɲi ɯmʲi e ikʲimasɨ.",),
        "z": ("wo↓mən mi↗ŋtʰjɛ→n ʦau↓ʂa↘ŋ ʨʰy↘ kʊ→ŋɥɛ↗n sa↘npu↘.",),
    }
)


def calibration_ids(lang: str, count: int = 3, vocab: Vocab | None = None) -> list[list[int]]:
    """``count`` calibration texts as ids: the language's own first, then English ones."""
    vocab = vocab or Vocab.load()
    own = list(CALIBRATION_PHONEMES.get(lang, ()))
    pool = own + [p for p in CALIBRATION_PHONEMES["a"] if p not in own]
    return [vocab.encode(p) for p in pool[:count]]


@dataclass(frozen=True)
class NormPriors:
    """Per-channel mean and variance of every generator norm at anchor style rows."""

    voice: str
    rows: np.ndarray  # int [A], increasing
    mean: np.ndarray  # float32 [A, sum(channels)]
    var: np.ndarray  # float32 [A, sum(channels)]
    channels: tuple[int, ...]

    def row_stats(self, row: int) -> dict[str, np.ndarray]:
        """Feeds ``norm{k}_mean|var`` ``[1, C, 1]`` for style row ``row`` (interpolated)."""
        row = min(max(int(row), 0), STYLE_ROWS - 1)
        j = int(np.searchsorted(self.rows, row))
        if j == 0 or (j < len(self.rows) and self.rows[j] == row):
            mean, var = self.mean[min(j, len(self.rows) - 1)], self.var[min(j, len(self.rows) - 1)]
        elif j == len(self.rows):
            mean, var = self.mean[-1], self.var[-1]
        else:
            r0, r1 = self.rows[j - 1], self.rows[j]
            w = (row - r0) / (r1 - r0)
            mean = (1 - w) * self.mean[j - 1] + w * self.mean[j]
            var = (1 - w) * self.var[j - 1] + w * self.var[j]
        return split_stats(mean, var, self.channels)

    def for_ids(self, n_ids: int) -> dict[str, np.ndarray]:
        """Statistics for a segment of ``n_ids`` phoneme ids (the row Kokoro's voice uses)."""
        return self.row_stats(n_ids - 1)

    def on_rows(self, rows: np.ndarray) -> NormPriors:
        """The same piecewise-linear curve tabulated at ``rows`` (exact when they include
        these anchors): voices calibrated at different anchors can then be blended."""
        rows = np.asarray(rows, np.int64)
        if np.array_equal(rows, self.rows):
            return self
        count = len(self.channels)
        flat = [flatten_stats(self.row_stats(int(r)), count) for r in rows]
        mean = np.stack([m for m, _ in flat]).astype(np.float32)
        var = np.stack([v for _, v in flat]).astype(np.float32)
        return NormPriors(self.voice, rows, mean, var, self.channels)

    @staticmethod
    def blend(parts: Sequence[tuple[NormPriors, float]], name: str) -> NormPriors:
        """Weighted average of priors (weights normalised), for a weighted voice mix."""
        rows = np.unique(np.concatenate([p.rows for p, _ in parts]))
        parts = [(p.on_rows(rows), w) for p, w in parts]  # exact: a superset of the knots
        first = parts[0][0]
        for p, _ in parts:
            if p.channels != first.channels:
                raise ValueError("priors to blend need the same model")
        w = np.asarray([wt for _, wt in parts], np.float64)
        w = w / w.sum()
        mean = sum(wi * p.mean.astype(np.float64) for (p, _), wi in zip(parts, w, strict=True))
        var = sum(wi * p.var.astype(np.float64) for (p, _), wi in zip(parts, w, strict=True))
        return NormPriors(
            name,
            first.rows,
            np.asarray(mean, np.float32),
            np.asarray(var, np.float32),
            first.channels,
        )

    def save(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            format=FORMAT_VERSION,
            voice=self.voice,
            rows=self.rows,
            mean=self.mean,
            var=self.var,
            channels=np.asarray(self.channels),
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> NormPriors:
        with np.load(path) as z:
            if int(z["format"]) != FORMAT_VERSION:
                raise ValueError(f"{path}: priors format {int(z['format'])}")
            return cls(
                str(z["voice"]),
                z["rows"].astype(np.int64),
                z["mean"].astype(np.float32),
                z["var"].astype(np.float32),
                tuple(int(c) for c in z["channels"]),
            )


def transfer_priors(reference: NormPriors, measured: NormPriors) -> NormPriors:
    """``measured`` (a voice calibrated at a few anchors) on ``reference``'s rows, with
    the reference voice's row curve between and beyond the measured anchors: the voice's
    offset from the reference at each anchor is interpolated linearly over rows (constant
    outside), the mean additively and the variance in log. The statistics move with the
    row in much the same way for every voice, so a cheap calibration keeps the shape."""
    if reference.channels != measured.channels:
        raise ValueError("priors to transfer need the same model")
    ref_at = [reference.row_stats(int(r)) for r in measured.rows]
    flat = [flatten_stats(s, len(reference.channels)) for s in ref_at]
    d_mean = measured.mean - np.stack([m for m, _ in flat])
    eps = 1e-8
    d_logvar = np.log(measured.var + eps) - np.log(np.stack([v for _, v in flat]) + eps)
    rows = reference.rows
    w = np.stack([np.interp(rows, measured.rows, np.eye(len(measured.rows))[k])
                  for k in range(len(measured.rows))], axis=1)  # fmt: skip
    mean = reference.mean + w @ d_mean
    var = np.exp(np.log(reference.var + eps) + w @ d_logvar) - eps
    return NormPriors(
        measured.voice,
        rows,
        np.asarray(mean, np.float32),
        np.asarray(np.maximum(var, 0.0), np.float32),
        reference.channels,
    )


def split_stats(
    mean: np.ndarray, var: np.ndarray, channels: Sequence[int]
) -> dict[str, np.ndarray]:
    """Flat ``[sum(C)]`` mean/var -> the generator's ``norm{k}_mean|var`` ``[1, C, 1]`` feeds."""
    out: dict[str, np.ndarray] = {}
    at = 0
    for k, c in enumerate(channels):
        out[f"norm{k:02d}_mean"] = np.ascontiguousarray(mean[at : at + c], np.float32).reshape(
            1, c, 1
        )
        out[f"norm{k:02d}_var"] = np.ascontiguousarray(var[at : at + c], np.float32).reshape(
            1, c, 1
        )
        at += c
    return out


def flatten_stats(stats: dict[str, np.ndarray], count: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`split_stats`."""
    mean = np.concatenate([stats[f"norm{k:02d}_mean"].reshape(-1) for k in range(count)])
    var = np.concatenate([stats[f"norm{k:02d}_var"].reshape(-1) for k in range(count)])
    return mean, var


def calibrate(
    decoder: WindowedDecoder,
    voice: str,
    table: np.ndarray,
    texts: Sequence[Sequence[int]],
    anchors: Sequence[int] = DEFAULT_ANCHORS,
    speed: float = 1.0,
) -> NormPriors:
    """Decode every text at every anchor row (style forced) and pool the statistics.

    Pooling is over frames: the anchor's mean is the frame-weighted mean of the texts'
    means, its variance the variance of all their frames together (within-text variance
    plus the spread of the texts' means), i.e. the statistics of the texts concatenated.
    """
    table = np.asarray(table, np.float32).reshape(STYLE_ROWS, -1)
    count = decoder.graphs.norm_count
    pool = StatsPool(anchors)
    for a, row in enumerate(anchors):
        style = table[row : row + 1]
        for ids in texts:
            xgen, f0, phase, _ = decoder.analyse(ids, style, speed)
            m, v = flatten_stats(decoder.exact_stats(xgen, f0, phase, style), count)
            pool.add(a, xgen.shape[-1], m, v)
    return pool.priors(voice, decoder.graphs.channels)


class StatsPool:
    """Frame-weighted pooling of calibration statistics per anchor: the statistics of the
    texts concatenated (mean of means weighted by frames; variance = within-text variance
    plus the spread of the texts' means). Used by :func:`calibrate` and by the engine's
    background calibration, which adds one decode at a time; thread-safe."""

    def __init__(self, anchors: Sequence[int]) -> None:
        self.anchors = tuple(int(a) for a in anchors)
        self.sums: dict[int, list[Any]] = {}  # anchor index -> [frames, sum m, sum v + m^2]
        self.lock = threading.Lock()

    def add(self, anchor: int, frames: int, mean: np.ndarray, var: np.ndarray) -> None:
        m, v = mean.astype(np.float64), var.astype(np.float64)
        with self.lock:
            s = self.sums.setdefault(anchor, [0, 0.0, 0.0])
            s[0] += frames
            s[1] = s[1] + frames * m
            s[2] = s[2] + frames * (v + m**2)

    def priors(self, voice: str, channels: tuple[int, ...]) -> NormPriors:
        means, vars_ = [], []
        for a in range(len(self.anchors)):
            n, s1, s2 = self.sums[a]
            mean = s1 / n
            means.append(mean)
            vars_.append(np.maximum(s2 / n - mean**2, 0.0))
        return NormPriors(
            voice,
            np.asarray(self.anchors, np.int64),
            np.asarray(means, np.float32),
            np.asarray(vars_, np.float32),
            channels,
        )


def priors_path(
    decoder: WindowedDecoder,
    voice: str,
    table: np.ndarray,
    texts: Sequence[Sequence[int]],
    anchors: Sequence[int],
    reference: NormPriors | None = None,
) -> Path:
    """``<graphs dir>/priors/<voice>-<key>.npz``: the graphs dir is keyed by the model's
    sha256; the key covers the voice table's bytes, the texts, the anchors and the
    reference priors whose row curve a quick calibration kept."""
    h = hashlib.sha256(np.ascontiguousarray(table, np.float32).tobytes())
    h.update(repr([list(map(int, t)) for t in texts]).encode())
    h.update(repr(list(map(int, anchors))).encode())
    if reference is not None:
        h.update(b"transfer")
        h.update(np.ascontiguousarray(reference.mean).tobytes())
    safe = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in voice)[:80]
    return decoder.graphs.directory / "priors" / f"{safe}-{h.hexdigest()[:12]}.npz"


def load_or_calibrate(
    decoder: WindowedDecoder,
    voice: str,
    table: np.ndarray,
    lang: str = "a",
    *,
    texts: Sequence[Sequence[int]] | None = None,
    anchors: Sequence[int] = DEFAULT_ANCHORS,
    text_count: int = DEFAULT_TEXTS,
) -> NormPriors:
    """The voice's priors from the cache, or calibrated now and saved (tens of CPU seconds:
    run it in the background, or at load for the configured voices)."""
    texts = texts if texts is not None else calibration_ids(lang, text_count)
    path = priors_path(decoder, voice, table, texts, anchors)
    if path.is_file():
        try:
            return NormPriors.load(path)
        except (OSError, ValueError, KeyError):
            _LOGGER.warning("Ignoring unreadable norm priors %s", path)
    t0 = time.perf_counter()
    priors = calibrate(decoder, voice, table, texts, anchors)
    priors.save(path)
    _LOGGER.info(
        "Norm priors for %s: %d anchors x %d texts in %.1f s -> %s",
        voice,
        len(anchors),
        len(texts),
        time.perf_counter() - t0,
        path,
    )
    return priors
