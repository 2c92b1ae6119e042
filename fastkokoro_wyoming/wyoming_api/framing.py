"""Wyoming audio framing: float chunks in, s16le ``audio-chunk`` payloads out.

Home Assistant plays what it gets, so every chunk but the last has exactly
``wyoming.samples_per_chunk`` samples whatever sizes the engine yields. The
conversion itself is the engine's PCM kernel (numba or NumPy).
"""

from __future__ import annotations

import numpy as np

from ..engine.serving.pcm import PcmKernels, default_kernels, flat


class PcmFramer:
    """Float chunks in, s16le frames of exactly ``samples_per_chunk`` samples out.

    What does not fill a frame is held (as int16) for the next :meth:`push`;
    :meth:`flush` returns it. One framer per reply; not for concurrent use.
    """

    def __init__(self, samples_per_chunk: int, kernels: PcmKernels | None = None) -> None:
        if samples_per_chunk < 1:
            raise ValueError("samples_per_chunk must be at least 1")
        self.samples_per_chunk = int(samples_per_chunk)
        self._kernels = kernels or default_kernels()
        self._held = np.empty(self.samples_per_chunk, dtype="<i2")
        self._n_held = 0

    @property
    def pending(self) -> int:
        """Samples held back, fewer than one frame."""
        return self._n_held

    def push(self, samples: np.ndarray) -> list[bytes]:
        """Convert ``samples`` and return every frame now complete (maybe none)."""
        x = flat(samples)
        size = self.samples_per_chunk
        held = self._n_held
        total = held + x.size
        if total < size:  # still no full frame: convert straight into the holding buffer
            self._kernels.convert_into(x, self._held[held:total])
            self._n_held = total
            return []
        pcm = np.empty(total, dtype="<i2")
        pcm[:held] = self._held[:held]
        self._kernels.convert_into(x, pcm[held:])
        full = total - total % size
        rest = total - full
        self._held[:rest] = pcm[full:]
        self._n_held = rest
        return [pcm[i : i + size].tobytes() for i in range(0, full, size)]

    def flush(self) -> bytes:
        """The held samples (a short last frame, maybe empty); the framer is empty after."""
        out = self._held[: self._n_held].tobytes()
        self._n_held = 0
        return out
