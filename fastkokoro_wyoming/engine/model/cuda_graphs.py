"""CUDA-graph replay of a fixed-bucket model (``engine.runtime.cuda_graph``).

A captured CUDA graph replays the same device buffers every time, so the inputs and
outputs are bound once here and later calls update them in place; calls take turns.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from .contract import Contract


class GraphBuffers:
    """Device buffers bound once for CUDA-graph replay of a fixed-shape (bucket) model."""

    def __init__(self, ort: Any, session: Any, contract: Contract, device: str) -> None:
        self._lock = threading.Lock()
        self._session = session
        self._inputs: dict[str, Any] = {}
        self._outputs: list[Any] = []
        self._binding = session.io_binding()
        dtypes = {contract.speed: contract.speed_dtype}
        for meta in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in meta.shape]
            dtype = dtypes.get(meta.name, np.int64 if "int64" in meta.type else np.float32)
            value = ort.OrtValue.ortvalue_from_numpy(np.zeros(shape, dtype), device, 0)
            self._inputs[meta.name] = value
            self._binding.bind_ortvalue_input(meta.name, value)
        for name in (contract.audio, contract.duration):
            meta = next(o for o in session.get_outputs() if o.name == name)
            if not all(isinstance(d, int) for d in meta.shape):
                raise ConfigError(
                    f"engine.runtime.cuda_graph: output {name} has a dynamic shape {meta.shape}"
                )
            dtype = np.int64 if "int64" in meta.type else np.float32
            value = ort.OrtValue.ortvalue_from_numpy(np.zeros(meta.shape, dtype), device, 0)
            self._outputs.append(value)
            self._binding.bind_ortvalue_output(name, value)

    def run(self, feed: dict[str, np.ndarray], options: Any) -> list[np.ndarray]:
        with self._lock:  # one captured graph, one set of buffers: replays take turns
            for name, value in feed.items():
                self._inputs[name].update_inplace(np.ascontiguousarray(value))
            self._session.run_with_iobinding(self._binding, options)
            return [v.numpy() for v in self._outputs]
