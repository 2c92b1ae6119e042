"""PCM kernels: float32 -> s16le, near-silence trimming, fixed-size framing.

Two implementations of the same kernels, chosen once per :class:`PcmKernels`:

* numba (the ``numba`` extra): one pass per call, no temporary arrays, compiled by
  :meth:`PcmKernels.warmup` at startup (and cached on disk) so no request pays for it;
* NumPy: the fallback when numba is missing, or forced with ``KOKORO_PCM_KERNELS=numpy``
  (or ``PcmKernels(use_numba=False)``).

Both give byte-identical results. The conversion is the historical
``(np.clip(x, -1, 1) * 32767).astype("<i2")``: clip, scale in the input's precision,
truncate toward zero; NaN becomes 0 (what that cast does on x86-64 and aarch64).
Only C-contiguous float32 goes through the compiled kernels (that is what the engine
makes); anything else takes the NumPy expression, so numba never compiles at run time.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..types import SAMPLE_RATE

_LOGGER = logging.getLogger(__name__)

# "numpy" forces the NumPy kernels. Not FASTKOKORO_*: config.py owns that prefix.
ENV_VAR = "KOKORO_PCM_KERNELS"
SCALE = 32767.0
_F32_ONE = np.float32(1.0)
_F32_SCALE = np.float32(SCALE)
_I16_ZERO = np.int16(0)

# A read-only signature takes writable arrays too (np.frombuffer's are read-only).
_RO_F32 = "Array(float32, 1, 'C', readonly=True)"

Convert = Callable[[np.ndarray, np.ndarray], None]
Bounds = Callable[[np.ndarray, np.float32], tuple[int, int]]


# --- the kernels, as plain Python (numba compiles these very functions) -------------------


def _convert_loop(x: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - via numba
    """float32[n] -> int16[n]: clip to [-1, 1], scale in float32, truncate; NaN -> 0."""
    one = _F32_ONE
    scale = _F32_SCALE
    zero = _I16_ZERO
    for i in range(x.size):  # branch-free, so LLVM vectorizes it
        xi = x[i]
        v = min(max(xi, -one), one)
        out[i] = np.int16(v * scale) if xi == xi else zero  # NaN tested on the input


def _bounds_loop(x: np.ndarray, threshold: np.float32) -> tuple[int, int]:  # pragma: no cover
    """[start, stop) from the first to the last sample with ``|x| > threshold``; (0, 0) if none."""
    n = x.size
    start = 0
    while start < n and not abs(x[start]) > threshold:
        start += 1
    if start == n:
        return 0, 0
    stop = n
    while not abs(x[stop - 1]) > threshold:
        stop -= 1
    return start, stop


# --- the NumPy versions ------------------------------------------------------------------


def _scaled_numpy(x: np.ndarray) -> np.ndarray:
    """The historical expression before its cast (any input dtype; float32 stays float32)."""
    scaled = np.clip(x, -1.0, 1.0)
    scaled *= SCALE
    return scaled


def _convert_numpy(x: np.ndarray, out: np.ndarray) -> None:
    # NaN: the cast gives 0 and, as it always did, NumPy's "invalid value" RuntimeWarning
    np.copyto(out, _scaled_numpy(x), casting="unsafe")


def _bounds_numpy(x: np.ndarray, threshold: np.float32) -> tuple[int, int]:
    loud = np.abs(x) > threshold
    start = int(loud.argmax()) if loud.size else 0
    if not loud.size or not loud[start]:
        return 0, 0
    return start, loud.size - int(loud[::-1].argmax())


@functools.cache
def _numba_kernels() -> tuple[Any, Any] | None:
    """Compiled dispatchers (explicit signatures), built once per process; None without numba."""
    if sys.byteorder != "little":  # int16[::1] below is native order; s16le is wanted
        return None
    try:
        import numba
    except ImportError:
        return None

    def jit(signature: str, func: Callable[..., Any]) -> Any:
        try:
            return numba.njit(signature, cache=True, nogil=True)(func)
        except RuntimeError:  # no writable cache location: compile in memory
            return numba.njit(signature, nogil=True)(func)

    return (
        jit(f"void({_RO_F32}, int16[::1])", _convert_loop),
        jit(f"UniTuple(int64, 2)({_RO_F32}, float32)", _bounds_loop),
    )


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return sys.byteorder == "little"


class PcmKernels:
    """The PCM kernels, numba-compiled or NumPy; immutable once built (thread-safe).

    ``use_numba``: True requires numba (ImportError otherwise), False forces NumPy,
    None picks numba when it is installed, unless ``$KOKORO_PCM_KERNELS`` is ``numpy``
    (or ``$NUMBA_DISABLE_JIT`` is set: numba's pure-Python mode would be far slower).
    """

    def __init__(self, use_numba: bool | None = None) -> None:
        if use_numba is None:
            forced = os.environ.get(ENV_VAR, "").strip().lower() == "numpy"
            no_jit = os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0")
            wanted = not forced and not no_jit
        else:
            wanted = use_numba
        self._compiled: tuple[Any, Any] | None = None
        t0 = time.perf_counter()
        if wanted:  # compiles now (or loads the on-disk cache): warmup() reports it
            self._compiled = _numba_kernels()
            if self._compiled is None and use_numba:
                raise ImportError("numba is not installed (the numba extra)")
        self.build_seconds = time.perf_counter() - t0
        self.numba: bool = self._compiled is not None
        self._convert32: Convert = self._compiled[0] if self._compiled else _convert_numpy
        self._bounds32: Bounds = self._compiled[1] if self._compiled else _bounds_numpy

    @property
    def name(self) -> str:
        return "numba" if self.numba else "numpy"

    @property
    def dispatchers(self) -> tuple[Any, ...]:
        """The numba dispatchers (empty for NumPy): tests read their ``signatures``."""
        return self._compiled or ()

    # --- conversion -----------------------------------------------------------------

    def convert_into(self, samples: np.ndarray, out: np.ndarray) -> None:
        """Write ``samples`` (1-D, any float) as int16 into ``out`` (same size, int16)."""
        if self._compiled and _compiled_fits(samples) and out.dtype == np.int16:
            self._convert32(samples, out)
        else:
            _convert_numpy(samples, out)

    def to_pcm16(self, samples: np.ndarray) -> bytes:
        """float [-1, 1] mono samples -> signed 16-bit little-endian bytes (clipped)."""
        x = flat(samples)
        if self._compiled and _compiled_fits(x):
            out = np.empty(x.size, dtype="<i2")
            self._convert32(x, out)
            return out.tobytes()
        return _scaled_numpy(x).astype("<i2").tobytes()

    # --- trimming -------------------------------------------------------------------

    def trim_bounds(self, samples: np.ndarray, threshold: float, margin: int = 0) -> slice:
        """The part of ``samples`` between its first and last sample louder than
        ``threshold``, widened by ``margin`` samples on each side; empty if all is quieter."""
        x = flat(samples)
        if x.dtype != np.float32 or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x, dtype=np.float32)
        start, stop = self._bounds32(x, np.float32(threshold))
        if start == stop:
            return slice(0, 0)
        return slice(max(0, start - margin), min(x.size, stop + margin))

    def trim(
        self,
        samples: np.ndarray,
        threshold: float = 1e-3,
        margin_ms: float = 5.0,
        rate: int = SAMPLE_RATE,
    ) -> np.ndarray:
        """``samples`` without leading/trailing near-silence (a view), keeping ``margin_ms``."""
        x = flat(samples)
        return x[self.trim_bounds(x, threshold, int(round(margin_ms * rate / 1000)))]

    # --- startup --------------------------------------------------------------------

    def warmup(self) -> float:
        """Run every kernel once on tiny inputs; returns the seconds it took (with the build).

        The numba kernels are compiled when the object is built (explicit signatures); this
        runs them so nothing else is left lazy (first-call dispatch, page faults).
        """
        t0 = time.perf_counter()
        x = np.array([0.5, -2.0, 0.0, 1e-6, 2e-3], dtype=np.float32)
        self.to_pcm16(x)
        self.trim_bounds(x, 1e-3, 1)
        self.convert_into(x[:2], np.empty(2, dtype="<i2"))  # what framing calls
        took = time.perf_counter() - t0 + self.build_seconds
        _LOGGER.debug("PCM kernels: %s, ready in %.3f s", self.name, took)
        return took


def _compiled_fits(x: np.ndarray) -> bool:
    """What the compiled signatures take: C-contiguous native float32 (``out`` alike)."""
    return x.dtype == np.float32 and x.flags.c_contiguous


def flat(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    return x.reshape(-1) if x.ndim != 1 else x


@functools.cache
def default_kernels() -> PcmKernels:
    """The process's kernels, built on first use (Engine.warmup builds them at startup)."""
    return PcmKernels()
