"""The two Kokoro model contracts, read from the graph's own input/output names.

* **classic** (hexgrad/onnx-community/kokoro-onnx exports): ``tokens`` or
  ``input_ids`` ``[1, N]``, ``style [1, 256]``, ``speed [1]`` -> ``audio``; N <= 512.
* **bucket** (msgflux's fixed-bucket streaming export): ``input_ids [1, B]``,
  ``style``, ``speed``, ``input_lengths [1]`` -> ``waveform`` (fixed length) and
  ``duration [B]``. Ids are padded to B and the waveform is trimmed to what the
  durations predict: 480 samples per alignment frame plus a 3,120-sample tail.

Kept apart from :mod:`.runtime` (which opens sessions) so the CUDA-graph buffers and the
session can both read it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    import onnxruntime as ort

SAMPLES_PER_FRAME = 480
CLASSIC_SAMPLES_PER_FRAME = 600  # the classic model's audio is 600 * sum(durations)
TAIL_SAMPLES = 3120
CLASSIC_CAPACITY = 510  # 512 positions minus the two pad ids


@dataclass(frozen=True)
class Contract:
    """How to call this export, read from its graph (classic or fixed-bucket)."""

    kind: str  # "classic" | "bucket"
    ids: str
    style: str
    speed: str
    speed_dtype: Any
    lengths: str | None
    audio: str
    duration: str | None
    bucket: int | None  # fixed id width B (bucket contract only)

    @property
    def capacity(self) -> int:
        """Most phoneme ids one call can take (besides the two pads)."""
        return self.bucket - 2 if self.bucket else CLASSIC_CAPACITY


def read_contract(session: ort.InferenceSession) -> Contract:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    ids = "input_ids" if "input_ids" in inputs else "tokens" if "tokens" in inputs else None
    style = "style" if "style" in inputs else "ref_s" if "ref_s" in inputs else None
    if ids is None or style is None or "speed" not in inputs:
        raise ConfigError(
            f"engine.model.path: unsupported Kokoro ONNX contract (inputs {sorted(inputs)}); "
            "expected "
            "tokens|input_ids, style, speed[, input_lengths]"
        )
    speed_dtype = (
        np.int32
        if "int32" in inputs["speed"].type
        else (np.int64 if "int64" in inputs["speed"].type else np.float32)
    )
    if "input_lengths" in inputs:
        width = inputs[ids].shape[-1]
        if not isinstance(width, int) or width < 3:
            raise ConfigError(
                f"engine.model.path: bucket contract needs a fixed input_ids width, got {width}"
            )
        audio = "waveform" if "waveform" in outputs else outputs[0]
        duration = "duration" if "duration" in outputs else None
        if duration is None:
            raise ConfigError(
                "engine.model.path: bucket contract needs a 'duration' output to trim audio"
            )
        return Contract(
            "bucket", ids, style, "speed", speed_dtype, "input_lengths", audio, duration, width
        )
    audio = "audio" if "audio" in outputs else "waveform" if "waveform" in outputs else outputs[0]
    return Contract("classic", ids, style, "speed", speed_dtype, None, audio, None, None)
