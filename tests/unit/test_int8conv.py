"""The int8-weight rewrites on tiny synthetic graphs shaped like the exporter's (fast)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fastkokoro_wyoming.engine.model.windowed.int8conv import (
    fold_adain_snake,
    int8_weight,
    pow_to_mul,
    rewrite_convs,
)

C_IN, C_OUT, T = 6, 5, 37


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "t",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _conv_model(kernel: int, stride: int, dilation: int, pad: int) -> onnx.ModelProto:
    """x -> DynamicQuantizeLinear -> ConvInteger(uint8 weight, zero point 64) -> + floor-
    quantised int32 bias -> Cast -> * (x_scale * w_scale): what quantize_dynamic writes."""
    rng = np.random.default_rng(kernel * 10 + stride)
    w = rng.integers(0, 128, (C_OUT, C_IN, kernel)).astype(np.uint8)
    inits = {
        "w": w,
        "wzp": np.array(64, np.uint8),
        "ws": np.array(0.02, np.float32),
        "b": rng.normal(0, 0.1, C_OUT).astype(np.float32),
        "shape": np.array([1, -1, 1], np.int64),
    }
    nodes = [
        helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
        helper.make_node(
            "ConvInteger",
            ["xq", "w", "xz", "wzp"],
            ["acc"],
            kernel_shape=[kernel],
            strides=[stride],
            dilations=[dilation],
            pads=[pad, pad],
        ),
        helper.make_node("Mul", ["xs", "ws"], ["scale"]),
        helper.make_node("Div", ["b", "scale"], ["bd"]),
        helper.make_node("Floor", ["bd"], ["bf"]),
        helper.make_node("Cast", ["bf"], ["bq"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["bq", "shape"], ["bqr"]),
        helper.make_node("Add", ["acc", "bqr"], ["accb"]),
        helper.make_node("Cast", ["accb"], ["accf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["accf", "scale"], ["y"]),
    ]
    return _model(nodes, ["x"], ["y"], inits)


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)[0]


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "pad"),
    [(7, 1, 1, 3), (3, 1, 5, 5), (12, 6, 1, 3), (1, 1, 1, 0)],
)
@pytest.mark.parametrize("fuse", [True, False])
def test_conv_rewrite_matches_conv_integer(kernel, stride, dilation, pad, fuse):
    model = _conv_model(kernel, stride, dilation, pad)
    x = np.random.default_rng(1).normal(0, 1, (1, C_IN, T)).astype(np.float32)
    want = _run(model, {"x": x})
    assert rewrite_convs(model, fuse_rescale=fuse) == 1
    ops = {n.op_type for n in model.graph.node}
    assert "ConvInteger" not in ops
    assert ("MatMulIntegerToFloat" in ops) == fuse
    got = _run(model, {"x": x})
    assert got.shape == want.shape
    if fuse:  # the same integers; the scale is applied in another order
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    else:  # integer sums are exact, and so is the rescale after them
        np.testing.assert_array_equal(got, want)


def test_weights_that_do_not_fit_int8_are_kept():
    w = np.array([[[0, 255]]], np.uint8)
    assert int8_weight(w, np.array(64, np.uint8)) is None
    np.testing.assert_array_equal(int8_weight(w[:, :, :1], np.array(64)), [[[-64]]])


def _snake_model() -> onnx.ModelProto:
    """AdaIN (statistics, gain and bias from inputs) then a snake, as the exporter writes."""
    alpha = np.random.default_rng(3).uniform(0.5, 2, (1, C_IN, 1)).astype(np.float32)
    inits = {
        "alpha": alpha,
        "recip": (1 / alpha).astype(np.float32),
        "two": np.array(2.0, np.float32),
    }
    inits["eps"] = np.array(1e-5, np.float32)
    nodes = [
        helper.make_node("Sub", ["x", "m"], ["d"]),
        helper.make_node("Add", ["v", "eps"], ["ve"]),
        helper.make_node("Sqrt", ["ve"], ["sd"]),
        helper.make_node("Div", ["d", "sd"], ["nrm"]),
        helper.make_node("Mul", ["g", "nrm"], ["t3"]),
        helper.make_node("Add", ["t3", "b"], ["t"]),
        helper.make_node("Mul", ["alpha", "t"], ["at"]),
        helper.make_node("Sin", ["at"], ["s"]),
        helper.make_node("Pow", ["s", "two"], ["s2"]),
        helper.make_node("Mul", ["recip", "s2"], ["rs"]),
        helper.make_node("Add", ["t", "rs"], ["y"]),
    ]
    return _model(nodes, ["x", "m", "v", "g", "b"], ["y"], inits)


def test_adain_snake_folds_to_one_affine():
    rng = np.random.default_rng(4)
    feed = {"x": rng.normal(0, 2, (1, C_IN, T)).astype(np.float32)}
    for name in ("m", "g", "b"):
        feed[name] = rng.normal(0, 1, (1, C_IN, 1)).astype(np.float32)
    feed["v"] = rng.uniform(0.5, 2, (1, C_IN, 1)).astype(np.float32)
    model = _snake_model()
    want = _run(model, feed)
    assert fold_adain_snake(model, ["x"]) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "Pow" not in ops and ops.count("Sin") == 1
    np.testing.assert_allclose(_run(model, feed), want, rtol=1e-4, atol=1e-5)
    # statistics that vary in time are not per-channel constants: nothing is folded
    assert fold_adain_snake(_snake_model(), ["x", "m"]) == 0


def test_pow_two_becomes_a_product():
    model = _snake_model()
    assert pow_to_mul(model) == 1
    mul = next(n for n in model.graph.node if n.output[0] == "s2")
    assert mul.op_type == "Mul" and list(mul.input) == ["s", "s"]
