"""The real int8 Kokoro file rewritten to fp32 weights (what a GPU runs), spoken on the CPU.

One rewrite and one model load for the module: the fp32 file is about 325 MB.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import onnx
import pytest

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import EngineConfig, LimitsConfig, ModelConfig, RuntimeConfig
from fastkokoro_wyoming.engine import Engine, SynthesisRequest
from fastkokoro_wyoming.engine.model.weights import has_integer_ops
from tests.support.daemon import MIN_ACCURACY, TWO
from tests.support.engines import collect
from tests.support.speech import transcribe, word_accuracy

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def fp32_engine(
    kokoro_assets: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Engine]:
    """The engine on CPU with ``engine.model.weights: fp32``: the cached rewrite is loaded."""
    model, voices = kokoro_assets
    cfg = EngineConfig(
        model=ModelConfig(
            path=str(model),
            voices=str(voices),
            weights="fp32",
            cache_dir=str(tmp_path_factory.mktemp("modelprep_cache")),
        ),
        runtime=RuntimeConfig(intra_op_threads=2, backend="onnxruntime"),
        limits=LimitsConfig(),
    )
    engine = await load_engine(cfg)
    yield engine
    engine.close()


def test_engine_loads_the_fp32_rewrite(fp32_engine, kokoro_assets):
    model, _ = kokoro_assets
    path = Path(fp32_engine.session.path)
    assert path != model and path.parent.name == "prepared" and path.name.endswith("-fp32.onnx")
    assert not has_integer_ops(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert {"MatMul", "Conv", "LSTM"} <= ops
    assert not ops & {"DynamicQuantizeLinear", "DequantizeLinear"}
    assert path.stat().st_size > 3 * model.stat().st_size  # int8 weights became fp32


async def test_fp32_rewrite_speaks_the_words(fp32_engine):
    audio = await collect(fp32_engine.synthesize(SynthesisRequest(TWO)))
    assert 3.0 < audio.size / 24000 < 10.0
    heard = transcribe(audio)
    accuracy = word_accuracy(TWO, heard)
    print(f"fp32 accuracy {accuracy:.2f}: {heard!r}")
    assert accuracy >= MIN_ACCURACY, heard
