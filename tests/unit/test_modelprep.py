"""engine/model/weights.py on tiny graphs: int8 -> fp32, q4/q8 MatMulNBits, the plan and the cache.

The float graphs are built with ``onnx.helper`` and quantised with onnxruntime's own
``quantize_dynamic`` (what made Kokoro's int8 file), so the rewrite is checked against the
patterns the real quantiser writes; the older int32-bias ConvInteger pattern of the real
Kokoro file (``onnx.quantize 0.1.0``) is built by hand.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fastkokoro_wyoming.engine.errors import ConfigError
from fastkokoro_wyoming.engine.model import weights as modelprep
from fastkokoro_wyoming.engine.model.weights import (
    WeightPlan,
    dequantize,
    plan_weights,
    prepare_model,
    quantize_matmul_nbits,
)

ort = pytest.importorskip("onnxruntime")
quantization = pytest.importorskip("onnxruntime.quantization")

D, H, VOCAB, N = 24, 8, 40, 11  # every weight shape distinct: a weight is found by its shape
# quantize_dynamic(per_channel=True) scales MatMul by output column, LSTM by (direction, gate
# row); these are the axes each scale spans (Conv stays per-tensor in dynamic mode)
PER_CHANNEL = {"W": (0,), "LW": (2,), "LR": (2,)}
INTEGER_OPS = {
    "MatMulInteger",
    "ConvInteger",
    "DynamicQuantizeLSTM",
    "DynamicQuantizeLinear",
    "DequantizeLinear",
    "QuantizeLinear",
}


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value.astype(np.float32), name)


def _save(path: Path, nodes, inputs, outputs, inits) -> Path:
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_float_model(path: Path, seed: int = 0) -> tuple[Path, dict[str, np.ndarray]]:
    """ids -> embedding -> MatMul+bias -> MatMul (same weight) -> Conv+bias -> Conv -> BiLSTM."""
    rng = np.random.default_rng(seed)

    def w(*shape: int, fan_in: int = 1, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(shape) * scale / np.sqrt(fan_in)).astype(np.float32)

    weights = {  # about unit gain per layer: activations stay O(1), the LSTM unsaturated
        "E": w(VOCAB, D),  # Gather embedding
        "W": w(D, D, fan_in=D),  # used by two MatMuls: must stay one initializer
        "CW": w(D, D, 3, fan_in=3 * D),  # Conv with bias
        "CW2": w(D, D, 5, fan_in=5 * D),  # Conv without bias
        "LW": w(2, 4 * H, D, fan_in=D),  # bidirectional LSTM
        "LR": w(2, 4 * H, H, fan_in=H),
    }
    biases = {
        "pos": w(D),
        "Wb": w(D, scale=0.1),
        "CB": w(D, scale=0.1),
        "LB": w(2, 8 * H, scale=0.1),
    }
    nodes = [
        helper.make_node("Gather", ["E", "ids"], ["emb"]),  # [1, N, D]
        helper.make_node("Add", ["emb", "pos"], ["x0"]),  # float consumer: Gather + Dequantize
        helper.make_node("MatMul", ["x0", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "Wb"], ["mm_b"]),
        helper.make_node("MatMul", ["mm_b", "W"], ["mm2"]),
        helper.make_node("Transpose", ["mm2"], ["ct"], perm=[0, 2, 1]),  # [1, D, N]
        helper.make_node("Conv", ["ct", "CW", "CB"], ["c1"], pads=[1, 1]),
        helper.make_node("Relu", ["c1"], ["c1r"]),
        helper.make_node("Conv", ["c1r", "CW2"], ["c2"], pads=[2, 2]),
        helper.make_node("Transpose", ["c2"], ["lt"], perm=[2, 0, 1]),  # [N, 1, D]
        helper.make_node(
            "LSTM", ["lt", "LW", "LR", "LB"], ["y"], hidden_size=H, direction="bidirectional"
        ),
    ]
    inits = [_init(k, v) for k, v in {**weights, **biases}.items()]
    _save(
        path,
        nodes,
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [1, "N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 1, H])],
        inits,
    )
    return path, weights


def build_legacy_conv_model(path: Path, weight_type: int = TensorProto.UINT8) -> tuple[Path, Path]:
    """A Conv+bias as Kokoro's int8 file has it: int32 bias added before the rescale.

    ``ConvInteger(DQL(x), Wq) + Reshape(Cast(Floor(bias / (xs * ws)))) -> Cast -> Mul(xs * ws)``
    Returns (float model, int8 model).
    """
    rng = np.random.default_rng(3)
    cw = (rng.standard_normal((D, D, 3)) * 0.3).astype(np.float32)
    cb = (rng.standard_normal(D) * 0.1).astype(np.float32)
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, D, "T"])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, D, "T"])
    fp = _save(
        path.with_name("legacy_float.onnx"),
        [helper.make_node("Conv", ["x", "CW", "CB"], ["y"], pads=[1, 1])],
        [x_info],
        [y_info],
        [_init("CW", cw), _init("CB", cb)],
    )
    if weight_type == TensorProto.UINT8:
        lo, hi = min(float(cw.min()), 0.0), max(float(cw.max()), 0.0)
        scale = np.float32((hi - lo) / 255)
        zero = np.uint8(round(-lo / scale))
        wq = np.clip(np.round(cw / scale) + zero, 0, 255).astype(np.uint8)
    else:
        scale = np.float32(np.abs(cw).max() / 127)
        zero = np.int8(0)
        wq = np.clip(np.round(cw / scale), -127, 127).astype(np.int8)
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node("Mul", ["xs", "CW_scale"], ["s"]),
        helper.make_node("Div", ["CB", "s"], ["bd"]),
        helper.make_node("Floor", ["bd"], ["bf"]),
        helper.make_node("Cast", ["bf"], ["bi"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["bi", "bshape"], ["br"]),
        helper.make_node(
            "ConvInteger",
            ["xq", "CW_quantized", "xz", "CW_zero_point"],
            ["ci"],
            pads=[1, 1],
            kernel_shape=[3],
        ),
        helper.make_node("Add", ["ci", "br"], ["ca"]),
        helper.make_node("Cast", ["ca"], ["cf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["cf", "s"], ["y"]),
    ]
    inits = [
        _init("CB", cb),
        numpy_helper.from_array(np.array(scale, np.float32), "CW_scale"),
        numpy_helper.from_array(wq, "CW_quantized"),
        numpy_helper.from_array(np.array(zero), "CW_zero_point"),
        numpy_helper.from_array(np.array([1, D, 1], np.int64), "bshape"),
    ]
    q8 = _save(path, nodes, [x_info], [y_info], inits)
    return fp, q8


def build_matmul_model(path: Path, k: int = 128, n: int = 64) -> Path:
    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["y"]),
    ]
    _save(
        path,
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "T", n])],
        [_init("W", rng.standard_normal((k, n)) * 0.2), _init("b", rng.standard_normal(n) * 0.1)],
    )
    return path


def quantize(src: Path, dst: Path, per_channel: bool, weight_type: str) -> Path:
    quantization.quantize_dynamic(
        str(src),
        str(dst),
        per_channel=per_channel,
        weight_type=getattr(quantization.QuantType, weight_type),
        op_types_to_quantize=["MatMul", "Conv", "LSTM", "Gather"],
    )
    return dst


def run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)[0]


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def ids_feed(seed: int = 7) -> dict[str, np.ndarray]:
    return {"ids": np.random.default_rng(seed).integers(0, VOCAB, (1, N), dtype=np.int64)}


# --------------------------------------------------------------------------- int8 -> fp32


@pytest.mark.parametrize("weight_type", ["QInt8", "QUInt8"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_dequantize_restores_float_weights(tmp_path, per_channel, weight_type):
    fp, weights = build_float_model(tmp_path / "float.onnx")
    q8 = quantize(fp, tmp_path / "int8.onnx", per_channel, weight_type)
    q_ops = ops(q8)
    # the quantiser really turned every kind of layer into integer ops
    assert q_ops.count("MatMulInteger") == 2
    assert q_ops.count("ConvInteger") == 2
    assert q_ops.count("DynamicQuantizeLSTM") == 1
    assert "DequantizeLinear" in q_ops  # after the int8 Gather of the embedding table
    q_model = onnx.load(str(q8))
    q_inits = {t.name: t for t in q_model.graph.initializer}
    gather = next(n for n in q_model.graph.node if n.op_type == "Gather")
    assert q_inits[gather.input[0]].data_type in (TensorProto.INT8, TensorProto.UINT8)

    out = tmp_path / "fp32.onnx"
    dequantize(q8, out)
    d_ops = ops(out)
    assert not INTEGER_OPS & set(d_ops), d_ops
    assert sorted(d_ops) == sorted(ops(fp) + ["Add", "Reshape"])  # Conv bias: Reshape + Add

    d_model = onnx.load(str(out))
    onnx.checker.check_model(d_model)
    inits = [numpy_helper.to_array(t) for t in d_model.graph.initializer]
    assert all(a.dtype != np.int8 and a.dtype != np.uint8 for a in inits)
    for name, w in weights.items():
        same = [a for a in inits if a.shape == w.shape]
        assert len(same) == 1, f"{name}: {len(same)} fp32 copies"  # W (used twice) stays shared
        # rounding to int8 moves a weight by at most half a step (a step <= max|w| / 127);
        # a scale applied along the wrong axis would move it by far more
        assert np.abs(same[0] - w).max() <= np.abs(w).max() / 250 + 1e-6, name
        if per_channel and name in PER_CHANNEL:  # each channel's step from its own range
            axes = PER_CHANNEL[name]
            bound = np.abs(w).max(axis=axes, keepdims=True) / 250 + 1e-6
            assert (np.abs(same[0] - w) <= bound).all(), name
    # nothing of the int8 graph left over: the weights and the LSTM's [2, 8H] bias
    assert sum(len(a.shape) >= 2 for a in inits) == len(weights) + 1

    feeds = ids_feed()
    ref, int8, fp32 = run(fp, feeds), run(q8, feeds), run(out, feeds)
    assert fp32.shape == ref.shape == (N, 2, 1, H)
    # weights rounded to int8, activations exact: closer to the float model than int8 is
    print(f"relative error: fp32 {rel_err(fp32, ref):.4f}, int8 {rel_err(int8, ref):.4f}")
    assert rel_err(fp32, ref) < 0.03
    assert rel_err(int8, ref) < 0.1
    assert np.abs(fp32 - ref).max() < 0.05


@pytest.mark.parametrize(
    "weight_type", [TensorProto.UINT8, TensorProto.INT8], ids=["uint8", "int8"]
)
def test_dequantize_legacy_int32_conv_bias(tmp_path, weight_type):
    """Kokoro's own file adds the Conv bias as int32 before the rescale."""
    fp, q8 = build_legacy_conv_model(tmp_path / "legacy_int8.onnx", weight_type)
    out = tmp_path / "legacy_fp32.onnx"
    dequantize(q8, out)
    assert ops(out) == ["Conv"]
    conv = onnx.load(str(out)).graph.node[0]
    assert len(conv.input) == 3  # the float bias went back into the Conv
    x = np.random.default_rng(5).standard_normal((1, D, 17)).astype(np.float32)
    ref, int8, fp32 = run(fp, {"x": x}), run(q8, {"x": x}), run(out, {"x": x})
    assert rel_err(int8, ref) < 0.1  # the hand-built int8 graph is itself right
    assert rel_err(fp32, ref) < 0.02


def test_dequantize_names_an_unknown_pattern(tmp_path):
    """A ConvInteger without the rescale it should have fails loudly, naming the node."""
    fp, q8 = build_legacy_conv_model(tmp_path / "legacy_int8.onnx")
    model = onnx.load(str(q8))
    conv = next(n for n in model.graph.node if n.op_type == "ConvInteger")
    conv.name = "odd_conv"
    conv.output[0] = "y_int"
    model.graph.node.append(helper.make_node("Cast", ["y_int"], ["y2"], to=TensorProto.FLOAT))
    for n in model.graph.node:  # give ConvInteger a second consumer
        if n.op_type == "Add" and "ci" in n.input:
            n.input[list(n.input).index("ci")] = "y_int"
    model.graph.output.append(helper.make_tensor_value_info("y2", TensorProto.FLOAT, None))
    onnx.save(model, str(q8))
    with pytest.raises(ValueError, match="odd_conv"):
        dequantize(q8, tmp_path / "out.onnx")


# --------------------------------------------------------------------------- q8 / q4


@pytest.mark.parametrize(
    ("bits", "block", "tolerance"), [(8, 32, 0.01), (4, 32, 0.12), (4, 128, 0.15)]
)
def test_matmul_nbits(tmp_path, bits, block, tolerance):
    pytest.importorskip("onnx_ir")
    fp = build_matmul_model(tmp_path / "mm.onnx")
    out = tmp_path / f"q{bits}.onnx"
    quantize_matmul_nbits(fp, out, bits=bits, block=block)
    q_ops = ops(out)
    assert "MatMulNBits" in q_ops and "MatMul" not in q_ops
    node = next(n for n in onnx.load(str(out)).graph.node if n.op_type == "MatMulNBits")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert (attrs["bits"], attrs["block_size"]) == (bits, block)
    x = np.random.default_rng(2).standard_normal((1, 5, 128)).astype(np.float32)
    ref, got = run(fp, {"x": x}), run(out, {"x": x})
    assert got.shape == ref.shape
    assert rel_err(got, ref) < tolerance
    assert out.stat().st_size < fp.stat().st_size


# --------------------------------------------------------------------------- plan


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tiny")
    fp, _ = build_float_model(d / "float.onnx")
    int8 = quantize(fp, d / "int8.onnx", per_channel=False, weight_type="QUInt8")
    fp16 = onnx.load(str(fp))
    for t in fp16.graph.initializer:  # weights stored as fp16: still a float model
        if t.data_type == TensorProto.FLOAT and len(t.dims) >= 2:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    onnx.save(fp16, str(d / "fp16.onnx"))
    return {
        "float": fp,
        "int8": int8,
        "fp16": d / "fp16.onnx",
        "matmul": build_matmul_model(d / "mm.onnx"),
    }


@pytest.mark.parametrize(
    ("requested", "model", "gpu", "mode"),
    [
        ("auto", "int8", False, "keep"),  # CPU: int8 is the fastest form (bench/quant_bench.py)
        ("auto", "float", False, "keep"),
        ("auto", "int8", True, "fp32"),  # CUDA has no integer kernels
        ("auto", "float", True, "keep"),
        ("keep", "int8", True, "keep"),
        ("fp32", "int8", False, "fp32"),
        ("fp32", "float", True, "keep"),  # already float
        ("q8", "float", False, "q8"),
        ("q4", "fp16", False, "q4"),
    ],
)
def test_plan_weights(tiny_models, requested, model, gpu, mode):
    plan = plan_weights(requested, tiny_models[model], gpu=gpu)
    assert plan.mode == mode
    assert plan.reason


@pytest.mark.parametrize("requested", ["q8", "q4"])
def test_plan_refuses_to_requantise_int8(tiny_models, requested):
    with pytest.raises(ConfigError, match=rf"engine\.model\.weights: {requested}.*int8\.onnx"):
        plan_weights(requested, tiny_models["int8"], gpu=False)


@pytest.mark.parametrize("requested", ["int8", "FP32", ""])
def test_plan_rejects_unknown_modes(tiny_models, requested):
    with pytest.raises(ConfigError, match=r"engine\.model\.weights"):
        plan_weights(requested, tiny_models["float"], gpu=False)


def test_float_weight_type(tiny_models):
    assert modelprep.float_weight_type(tiny_models["float"]) == "float32"
    assert modelprep.float_weight_type(tiny_models["fp16"]) == "float16"
    assert modelprep.float_weight_type(tiny_models["int8"]) is None
    assert modelprep.has_integer_ops(tiny_models["int8"])
    assert not modelprep.has_integer_ops(tiny_models["float"])


# --------------------------------------------------------------------------- cache


def test_prepare_keep_is_the_model_itself(tiny_models, tmp_path):
    assert (
        prepare_model(tiny_models["int8"], WeightPlan("keep", "x"), tmp_path)
        == (tiny_models["int8"])
    )
    assert not (tmp_path / "prepared").exists()


def test_prepare_writes_once_and_reuses(tiny_models, tmp_path, monkeypatch):
    plan = WeightPlan("fp32", "test")
    first = prepare_model(tiny_models["int8"], plan, tmp_path)
    assert first.parent == tmp_path / "prepared" and first.name.endswith("-fp32.onnx")
    assert first.name.startswith("int8-")
    assert not INTEGER_OPS & set(ops(first))
    mtime = first.stat().st_mtime_ns
    assert [p.name for p in (tmp_path / "prepared").iterdir()] == [first.name]  # no temp left

    def fail(*_a, **_k):
        raise AssertionError("rewritten again instead of read from the cache")

    monkeypatch.setattr(modelprep, "dequantize", fail)
    t0 = time.perf_counter()
    again = prepare_model(tiny_models["int8"], plan, tmp_path)
    assert time.perf_counter() - t0 < 1.0
    assert again == first and again.stat().st_mtime_ns == mtime


def test_prepare_files_per_mode_and_block(tiny_models, tmp_path):
    pytest.importorskip("onnx_ir")
    model = tiny_models["matmul"]
    paths = {
        (mode, block): prepare_model(model, WeightPlan(mode, "test"), tmp_path, block_size=block)
        for mode in ("q8", "q4")
        for block in (32, 64)
    }
    assert len({p.name for p in paths.values()}) == 4
    for (mode, block), path in paths.items():
        assert path.name.endswith(f"-{mode}-b{block}.onnx")
        node = next(n for n in onnx.load(str(path)).graph.node if n.op_type == "MatMulNBits")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert (attrs["bits"], attrs["block_size"]) == (int(mode[1]), block)
    assert sorted(os.listdir(tmp_path / "prepared")) == sorted(p.name for p in paths.values())


def test_prepare_tracks_the_source_content(tmp_path):
    """Same file name, different weights: a different cache entry (named by digest)."""
    pytest.importorskip("onnx_ir")
    src = build_matmul_model(tmp_path / "model.onnx")
    a = prepare_model(src, WeightPlan("q8", "test"), tmp_path / "cache")
    model = onnx.load(str(src))
    model.graph.initializer[1].CopyFrom(_init("b", np.ones(64)))
    onnx.save(model, str(src))
    b = prepare_model(src, WeightPlan("q8", "test"), tmp_path / "cache")
    assert a != b and a.is_file() and b.is_file()
