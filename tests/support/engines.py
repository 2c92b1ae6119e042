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


async def until_settled(engine: object, timeout: float = 900) -> None:
    """Until ``engine`` serves as it will from now on: on a fresh cache the windowed
    graphs, the int8 check, the default voice's priors and its loudness are prepared in the
    background after load (tens of seconds on CI's 2 cores), and tests that look at the
    windowed decoder or compare levels need them done, not a whole-segment start."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    windowed = getattr(engine, "windowed", None)
    loudness = getattr(engine, "loudness", None)
    voice = engine.voice_for(None)  # type: ignore[attr-defined]
    while True:
        ready = windowed is None or (windowed.decoder is not None and not windowed.preparing())
        ready = ready and (loudness is None or loudness.measured(voice) is not None)
        if ready:
            return
        if loop.time() > end:
            pending = windowed.preparing() if windowed is not None else []
            raise TimeoutError(f"engine not settled after {timeout:.0f} s: {pending}")
        await asyncio.sleep(0.2)
