"""Objective checks of windowed audio against a whole decode (tests, bench, derive check).

Numpy only. The int8 model is not bit-stable (a 1e-6 input change moves its output by
spectral SNR 23-25 dB, log-mel 0.7-0.9 dB), so these compare spectra, not samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

RATE = 24000


def _frames(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    x = np.pad(np.asarray(x, np.float64), (0, max(0, n_fft - x.size)))
    n = (x.size - n_fft) // hop + 1
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    return x[idx] * np.hanning(n_fft)


def _power(x: np.ndarray, n_fft: int) -> np.ndarray:
    return np.abs(np.fft.rfft(_frames(x, n_fft, n_fft // 4), axis=1)) ** 2


def spectral_snr_db(ref: np.ndarray, test: np.ndarray, n_fft: int = 1024) -> float:
    """Magnitude-spectrogram SNR (phase-insensitive, so sub-sample shifts do not dominate)."""
    a, b = np.sqrt(_power(ref, n_fft)), np.sqrt(_power(test, n_fft))
    return float(10 * np.log10(np.sum(a**2) / max(float(np.sum((a - b) ** 2)), 1e-20)))


@lru_cache(maxsize=4)
def _mel_bank(n_fft: int, n_mels: int, rate: int) -> np.ndarray:
    def mel(f: np.ndarray) -> np.ndarray:
        return 2595 * np.log10(1 + f / 700)

    edges = 700 * (10 ** (np.linspace(0, mel(np.array(rate / 2.0)), n_mels + 2) / 2595) - 1)
    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    bank = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m : m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    return bank


def log_mel_db(x: np.ndarray, n_fft: int = 1024, n_mels: int = 80) -> np.ndarray:
    """Log-mel power spectrogram in dB, floored 80 dB below its peak."""
    mel = _power(x, n_fft) @ _mel_bank(n_fft, n_mels, RATE).T
    db = 10 * np.log10(np.maximum(mel, 1e-12))
    return np.maximum(db, db.max() - 80)


def log_mel_distance_db(ref: np.ndarray, test: np.ndarray) -> float:
    """RMS difference of the two log-mel spectrograms (dB), the reference's floor for both."""
    a, b = log_mel_db(ref), log_mel_db(test)
    floor = a.min()
    return float(np.sqrt(np.mean((a - np.maximum(b, floor)) ** 2)))


def join_jumps(audio: np.ndarray, joins: Sequence[int]) -> tuple[float, float]:
    """Largest |x[i] - x[i-1]| at the join samples, and the largest anywhere else."""
    d = np.abs(np.diff(np.asarray(audio, np.float64)))
    at = [j - 1 for j in joins if 0 < j < audio.size]
    mask = np.ones(d.size, bool)
    mask[at] = False
    return (float(d[at].max()) if at else 0.0), float(d[mask].max())
