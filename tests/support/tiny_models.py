"""Tiny ONNX graphs with Kokoro's two contracts, built with ``onnx.helper``.

The bucket graph stands in for msgflux's fixed-bucket export (not reachable
offline): ``input_ids [1,B] int64, style [1,256], speed [1], input_lengths [1]
int64 -> waveform [W] f32, duration [B] int64``. Each real position (index <
input_lengths) lasts 2 frames, pads 0; the waveform is always W samples long and
every sample equals ``sum(input_ids)``, so a test can see which ids reached it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FRAMES_PER_ID = 2


def build_bucket_model(path: Path, bucket: int = 16) -> Path:
    width = bucket * FRAMES_PER_ID * 480 + 3120 + 4800  # longer than any real speech
    nodes = [
        helper.make_node("Range", ["zero", "b", "one"], ["pos"]),
        helper.make_node("Less", ["pos", "input_lengths"], ["real"]),
        helper.make_node("Cast", ["real"], ["real_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["real_i", "two"], ["duration"]),
        helper.make_node("ReduceSum", ["input_ids"], ["idsum"], keepdims=0),
        helper.make_node("Cast", ["idsum"], ["idsum_f"], to=TensorProto.FLOAT),
        helper.make_node("Expand", ["idsum_f", "wshape"], ["wave0"]),
        helper.make_node("ReduceSum", ["style"], ["ssum"], keepdims=0),
        helper.make_node("Mul", ["ssum", "zero_f"], ["s0"]),  # style and speed feed the graph
        helper.make_node("ReduceSum", ["speed"], ["spd"], keepdims=0),
        helper.make_node("Mul", ["spd", "zero_f"], ["sp0"]),
        helper.make_node("Add", ["wave0", "s0"], ["wave1"]),
        helper.make_node("Add", ["wave1", "sp0"], ["waveform"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(bucket, np.int64), "b"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array(FRAMES_PER_ID, np.int64), "two"),
        numpy_helper.from_array(np.array([width], np.int64), "wshape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_kokoro_bucket",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, bucket]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
            helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
        ],
        [
            helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [width]),
            helper.make_tensor_value_info("duration", TensorProto.INT64, [bucket]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def build_classic_model(path: Path) -> Path:
    """``tokens [1,N] -> audio [N*600]``: each id becomes 600 samples of its value."""
    nodes = [
        helper.make_node("Cast", ["tokens"], ["tf"], to=TensorProto.FLOAT),
        helper.make_node("Reshape", ["tf", "col"], ["tcol"]),
        helper.make_node("Expand", ["tcol", "rowshape"], ["tiled"]),
        helper.make_node("Reshape", ["tiled", "flat"], ["audio0"]),
        helper.make_node("ReduceSum", ["style"], ["ssum"], keepdims=0),
        helper.make_node("ReduceSum", ["speed"], ["spd"], keepdims=0),
        helper.make_node("Add", ["ssum", "spd"], ["x"]),
        helper.make_node("Mul", ["x", "zero_f"], ["x0"]),
        helper.make_node("Add", ["audio0", "x0"], ["audio"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([-1, 1], np.int64), "col"),
        numpy_helper.from_array(np.array([1, 600], np.int64), "rowshape"),
        numpy_helper.from_array(np.array([-1], np.int64), "flat"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero_f"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_kokoro_classic",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "n"]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
            helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["samples"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
