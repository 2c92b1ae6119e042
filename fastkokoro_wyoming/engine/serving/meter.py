"""Loudness (ITU-R BS.1770-4) and the gain + peak limiter applied to each stream.

The meter is BS.1770's: K-weighting (a +4 dB shelf above ~1.5 kHz and a 38 Hz high-pass,
designed for the actual rate with the RBJ biquads, as pyloudnorm does), mean square over
400 ms blocks with 75 % overlap, an absolute gate at -70 LUFS and a relative gate 10 LU
under the ungated level. NumPy only: the two biquads are applied in the frequency domain
(their exact response on a zero-padded FFT) instead of a recursive filter, which NumPy
cannot run fast; tests/unit/test_loudness.py checks it against pyloudnorm.

:class:`Leveller` applies a stream's gain and a peak limiter with no look-ahead past the
chunk it is given (chunks go out as they are made): every sample comes out at or under
the ceiling, the gain drops at once where a peak needs it (and a little before it, inside
the chunk) and recovers over ``release`` seconds, across chunks.
"""

from __future__ import annotations

import math

import numpy as np

BLOCK_S = 0.400
STEP_S = 0.100  # 75 % overlap
ABSOLUTE_GATE = -70.0
RELATIVE_GATE = -10.0
CEILING_DBFS = -1.0
SILENCE = -math.inf


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: float) -> tuple[tuple, tuple]:
    """RBJ cookbook high shelf / high pass, normalised by a0."""
    a = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * fc / rate
    alpha = math.sin(w0) / (2.0 * q)
    cos = math.cos(w0)
    if kind == "high_shelf":
        sq = 2 * math.sqrt(a) * alpha
        b = (a * ((a + 1) + (a - 1) * cos + sq), -2 * a * ((a - 1) + (a + 1) * cos),
             a * ((a + 1) + (a - 1) * cos - sq))  # fmt: skip
        den = ((a + 1) - (a - 1) * cos + sq, 2 * ((a - 1) - (a + 1) * cos),
               (a + 1) - (a - 1) * cos - sq)  # fmt: skip
    else:  # high_pass
        b = ((1 + cos) / 2, -(1 + cos), (1 + cos) / 2)
        den = (1 + alpha, -2 * cos, 1 - alpha)
    return tuple(x / den[0] for x in b), tuple(x / den[0] for x in den)


def k_weighted(samples: np.ndarray, rate: int) -> np.ndarray:
    """``samples`` through BS.1770's K-weighting (both stages), float64."""
    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    pad = int(rate)  # the filters' impulse responses die out well within a second
    n = 1 << int(math.ceil(math.log2(x.size + pad)))
    spectrum = np.fft.rfft(x, n)
    z = np.exp(-1j * np.linspace(0.0, math.pi, spectrum.size))  # z^-1 on the unit circle
    for stage in (("high_shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        b, a = _biquad(stage[0], stage[1], stage[2], stage[3], rate)
        spectrum *= (b[0] + b[1] * z + b[2] * z * z) / (a[0] + a[1] * z + a[2] * z * z)
    return np.fft.irfft(spectrum, n)[: x.size]


def integrated_loudness(samples: np.ndarray, rate: int) -> float:
    """Gated integrated loudness of mono ``samples`` in LUFS (-inf for silence or audio
    shorter than one block)."""
    y = k_weighted(samples, rate)
    block, step = int(BLOCK_S * rate), int(round(STEP_S * rate))
    if y.size < block:
        return SILENCE
    count = int(round((y.size / rate - BLOCK_S) / STEP_S)) + 1
    starts = np.arange(count) * step
    starts = starts[starts + block <= y.size]
    power = np.concatenate([[0.0], np.cumsum(y * y)])
    z = (power[starts + block] - power[starts]) / block
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(z)
    gated = z[levels >= ABSOLUTE_GATE]
    if gated.size == 0:
        return SILENCE
    relative = -0.691 + 10 * math.log10(float(gated.mean())) + RELATIVE_GATE
    kept = z[(levels > relative) & (levels > ABSOLUTE_GATE)]
    if kept.size == 0:
        return SILENCE
    return -0.691 + 10 * math.log10(float(kept.mean()))


def db_to_gain(db: float) -> float:
    return 10 ** (db / 20.0)


class Leveller:
    """One stream's gain and peak limiter (state carries from chunk to chunk)."""

    def __init__(
        self,
        gain: float,
        rate: int,
        ceiling_dbfs: float = CEILING_DBFS,
        attack_s: float = 0.002,
        release_s: float = 0.080,
    ) -> None:
        self.gain = float(gain)
        self.ceiling = db_to_gain(ceiling_dbfs)
        self.attack = math.exp(-1.0 / (attack_s * rate))  # per-sample decay of the hold
        self.release = math.exp(-1.0 / (release_s * rate))
        self.envelope = 0.0  # the peak hold at the end of the last chunk
        self.limited = 0  # samples the limiter turned down (for tests and logs)

    def apply(self, chunk: np.ndarray) -> np.ndarray:
        """``chunk`` (float32) times the gain, its peaks held under the ceiling."""
        if chunk.size == 0:
            return chunk
        y = chunk.astype(np.float32) * np.float32(self.gain)
        mag = np.abs(y).astype(np.float64)
        if self.envelope <= self.ceiling and mag.max() <= self.ceiling:
            self.envelope = 0.0  # nothing to turn down, here or carried into the next chunk
            return y
        env = np.maximum(self._hold(mag, self.release, self.envelope), self._ahead(mag))
        self.envelope = float(env[-1])
        reduce = np.minimum(1.0, self.ceiling / np.maximum(env, 1e-12))
        self.limited += int(np.count_nonzero(reduce < 1.0))
        return (y * reduce).astype(np.float32)

    @staticmethod
    def _hold(mag: np.ndarray, decay: float, start: float) -> np.ndarray:
        """``env[n] = max(mag[n], decay * env[n-1])`` (from ``start``), without a Python
        loop: the max of ``mag[k] * decay**(n-k)``, computed in blocks so the powers of
        ``1/decay`` stay finite."""
        out = np.empty_like(mag)
        carry = start
        block = 4096
        for lo in range(0, mag.size, block):
            seg = mag[lo : lo + block]
            n = np.arange(seg.size, dtype=np.float64)
            up = decay ** (-n)
            held = np.maximum.accumulate(seg * up) / up
            out[lo : lo + seg.size] = np.maximum(held, carry * decay ** (n + 1))
            carry = float(out[lo + seg.size - 1])
        return out

    def _ahead(self, mag: np.ndarray) -> np.ndarray:
        """The same hold run backwards with the short attack: the gain starts down a
        couple of milliseconds before a peak inside the chunk, not on it."""
        return self._hold(mag[::-1], self.attack, 0.0)[::-1]
