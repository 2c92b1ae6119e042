"""Building real engines for tests: config on the fetched assets, and draining their audio."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from fastkokoro_wyoming.config import EngineConfig, LimitsConfig, ModelConfig, RuntimeConfig


def patient_limits(**kw: object) -> LimitsConfig:
    """The default limits with admission bounds no test machine reaches: the tests run on
    machines of any speed, shared with other work, where a 4 s bulk bound refuses requests
    a quiet 2-core machine admits. Admission has its own tests, with their own bounds."""
    bounds: dict[str, object] = {"bulk_max_wait_s": 120.0, "interactive_max_wait_s": 120.0}
    return LimitsConfig(**{**bounds, **kw})  # type: ignore[arg-type]


def engine_config(model: Path, voices: Path, **kw: object) -> EngineConfig:
    """The engine on the fetched assets; the generator on ONNX Runtime unless ``runtime``
    says otherwise: with the ``openvino`` extra installed (CI installs it for
    tests/integration/test_openvino_generator.py), ``auto`` would swap OpenVINO in midway
    on a CPU where it pays, under tests whose bounds are ONNX Runtime's."""
    limits = kw.pop("limits", patient_limits())
    kw.setdefault("runtime", RuntimeConfig(backend="onnxruntime"))
    return EngineConfig(model=ModelConfig(path=str(model), voices=str(voices)), limits=limits, **kw)  # type: ignore[arg-type]


async def collect(agen: AsyncIterator[np.ndarray], timeout: float = 300) -> np.ndarray:
    async def run() -> np.ndarray:
        return np.concatenate([c async for c in agen] or [np.zeros(0, np.float32)])

    return await asyncio.wait_for(run(), timeout)
