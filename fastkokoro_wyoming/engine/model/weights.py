"""Model preparation: rewrite a Kokoro ONNX graph for the provider that runs it.

* ``fp32``: a dynamically quantised int8 model (``DynamicQuantizeLinear`` +
  ``MatMulInteger``/``ConvInteger``/``DynamicQuantizeLSTM``, what
  ``onnxruntime.quantization.quantize_dynamic`` writes) back to float weights. CUDA has no
  kernels for the integer ops, so on a GPU the int8 file falls back to the CPU; the fp32
  copy runs there in full.
* ``q8`` / ``q4``: weight-only block quantisation of a float model's MatMuls to
  ``MatMulNBits`` with onnxruntime's own quantiser, for fp16/fp32 models on a CPU.

Each prepared file is written once into the cache, named by the source's digest and the
settings, and reused on the next start.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..settings import WeightsMode, choices

_LOGGER = logging.getLogger(__name__)

WEIGHT_MODES = choices(WeightsMode)  # direct callers are checked too
_INTEGER_OPS = {"MatMulInteger", "ConvInteger", "DynamicQuantizeLSTM"}


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError as err:
        raise ConfigError(
            "engine.model.weights: rewriting the model needs the 'onnx' package "
            "(pip install 'fastkokoro-wyoming[gpu]' or 'onnx')"
        ) from err
    return onnx


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def has_integer_ops(model: Path) -> bool:
    """Whether the graph uses dynamic-quantisation integer ops (no CUDA kernels)."""
    onnx = _import_onnx()
    graph = onnx.load(str(model), load_external_data=False).graph
    return any(n.op_type in _INTEGER_OPS for n in graph.node)


def float_weight_type(model: Path) -> str | None:
    """'float16' or 'float32' for a float model (by its largest initializers), else None."""
    onnx = _import_onnx()
    graph = onnx.load(str(model), load_external_data=False).graph
    if any(n.op_type in _INTEGER_OPS or n.op_type == "MatMulNBits" for n in graph.node):
        return None
    sizes: dict[int, int] = {}
    for t in graph.initializer:
        n = int(np.prod(t.dims)) if t.dims else 1
        sizes[t.data_type] = sizes.get(t.data_type, 0) + n
    if not sizes:
        return None
    dtype = max(sizes, key=sizes.__getitem__)
    return {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}.get(dtype)


@dataclass(frozen=True)
class WeightPlan:
    """What to do with the weights: ``keep`` or one of the rewrites, and why."""

    mode: str
    reason: str


def plan_weights(requested: str, model: Path, gpu: bool) -> WeightPlan:
    """Resolve ``engine.model.weights`` for this model and provider."""
    if requested not in WEIGHT_MODES:
        raise ConfigError(
            f"engine.model.weights: {requested!r} is not one of {', '.join(WEIGHT_MODES)}"
        )
    if requested == "keep":
        return WeightPlan("keep", "as configured")
    if requested == "auto":
        if not gpu:  # measured: int8 is the fastest CPU form of this model (bench/quant_bench.py)
            return WeightPlan("keep", "CPU runs the model as it is")
        try:
            integer = has_integer_ops(model)
        except ConfigError:
            _LOGGER.warning("onnx is not installed: the int8 model runs partly on the CPU")
            return WeightPlan("keep", "onnx missing")
        if integer:
            return WeightPlan("fp32", "int8 integer ops have no CUDA kernels")
        return WeightPlan("keep", "float model")
    if requested == "fp32" and not has_integer_ops(model):
        return WeightPlan("keep", "already a float model")
    if requested in ("q8", "q4") and float_weight_type(model) is None:
        raise ConfigError(
            f"engine.model.weights: {requested} needs a float (fp16/fp32) model; "
            f"{model.name} is already quantised"
        )
    return WeightPlan(requested, "as configured")


def prepare_model(model: Path, plan: WeightPlan, cache_dir: Path, block_size: int = 32) -> Path:
    """The model file to load: ``model`` itself, or its rewrite from the cache."""
    if plan.mode == "keep":
        return model
    suffix = plan.mode if plan.mode == "fp32" else f"{plan.mode}-b{block_size}"
    out_dir = Path(cache_dir) / "prepared"
    out = out_dir / f"{model.stem}-{file_digest(model)}-{suffix}.onnx"
    if out.is_file():
        _LOGGER.info("Model weights: %s from cache (%s)", plan.mode, out)
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    _LOGGER.info("Model weights: writing %s copy of %s (%s)", plan.mode, model.name, plan.reason)
    try:
        if plan.mode == "fp32":
            dequantize(model, tmp)
        else:
            quantize_matmul_nbits(model, tmp, bits=8 if plan.mode == "q8" else 4, block=block_size)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- int8 -> fp32


class _Graph:
    """Index of one ONNX graph: producers, consumers, initializers as arrays."""

    def __init__(self, graph: Any) -> None:
        from onnx import numpy_helper

        self.graph = graph
        self.init = {t.name: t for t in graph.initializer}
        self._arrays: dict[str, np.ndarray] = {}
        self._numpy_helper = numpy_helper
        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self._count = 0
        self._weights: dict[tuple[Any, ...], str] = {}

    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = self._numpy_helper.to_array(self.init[name])
        return self._arrays[name]

    def add_init(self, base: str, value: np.ndarray) -> str:
        self._count += 1
        name = f"{base}_fp32_{self._count}"
        self.graph.initializer.append(self._numpy_helper.from_array(value, name))
        return name

    def only_consumer(self, name: str, op: str) -> Any:
        nodes = self.consumers.get(name, [])
        if len(nodes) != 1 or nodes[0].op_type != op:
            raise ValueError(f"{name}: expected one {op} consumer")
        return nodes[0]

    def scale_of(self, mul_input: str) -> np.ndarray:
        """Weight scale inside ``Mul(x_scale, w_scale)`` that feeds a rescale."""
        node = self.producer.get(mul_input)
        if node is None or node.op_type != "Mul":
            raise ValueError(f"{mul_input}: expected Mul(x_scale, w_scale)")
        inits = [i for i in node.input if i in self.init]
        if len(inits) != 1:
            raise ValueError(f"{mul_input}: expected one constant scale")
        return self.array(inits[0]).astype(np.float32)

    def float_input(self, quantized: str) -> str:
        node = self.producer.get(quantized)
        if node is None or node.op_type != "DynamicQuantizeLinear":
            raise ValueError(f"{quantized}: expected DynamicQuantizeLinear")
        return node.input[0]

    def weight(self, q: str, zp: str | None, scale: np.ndarray, axis: int) -> str:
        """Initializer name of the fp32 weight; shared weights (ALBERT layers) stay shared."""
        key = (q, zp, axis, hashlib.sha1(scale.tobytes()).hexdigest())
        if key not in self._weights:
            w = self.array(q).astype(np.float32)
            if zp:
                z = self.array(zp).astype(np.float32)
                w = w - (z if z.ndim == 0 else np.expand_dims(z, _other_axes(w.ndim, axis)))
            s = scale if scale.ndim == 0 else np.expand_dims(scale, _other_axes(w.ndim, axis))
            self._weights[key] = self.add_init(q, (w * s).astype(np.float32))
        return self._weights[key]


def _other_axes(ndim: int, axis: int) -> tuple[int, ...]:
    axis %= ndim
    return tuple(i for i in range(ndim) if i != axis)


def dequantize(src: Path, dst: Path) -> None:
    """Rewrite a ``quantize_dynamic`` int8 Kokoro graph with fp32 weights (same outputs)."""
    onnx = _import_onnx()
    from onnx import helper

    model = onnx.load(str(src))
    g = _Graph(model.graph)
    replace: dict[int, Any] = {}  # id(first node of a pattern) -> new node
    drop: set[int] = set()
    for node in list(model.graph.node):
        if node.op_type == "MatMulInteger":
            cast = g.only_consumer(node.output[0], "Cast")
            mul = g.only_consumer(cast.output[0], "Mul")
            scale = g.scale_of(next(i for i in mul.input if i != cast.output[0]))
            w = g.weight(node.input[1], node.input[3] if len(node.input) > 3 else None, scale, -1)
            x = g.float_input(node.input[0])
            replace[id(node)] = helper.make_node("MatMul", [x, w], [mul.output[0]], name=node.name)
            drop |= {id(cast), id(mul)}
        elif node.op_type == "ConvInteger":
            nxt = g.consumers[node.output[0]]
            bias: str | None = None
            chain = [nxt[0]] if len(nxt) == 1 else []
            if chain and chain[0].op_type == "Add":  # int32 bias, quantised with the scale
                add = chain[0]
                bias_q = next(i for i in add.input if i != node.output[0])
                bias = _float_bias(g, bias_q)
                chain.append(g.only_consumer(add.output[0], "Cast"))
            elif not chain or chain[0].op_type != "Cast":
                raise ValueError(f"{node.name}: unexpected ConvInteger pattern")
            mul = g.only_consumer(chain[-1].output[0], "Mul")
            scale = g.scale_of(next(i for i in mul.input if i != chain[-1].output[0]))
            w = g.weight(node.input[1], node.input[3] if len(node.input) > 3 else None, scale, 0)
            inputs = [g.float_input(node.input[0]), w]
            if bias is not None:
                inputs.append(bias)
            new = helper.make_node("Conv", inputs, [mul.output[0]], name=node.name)
            new.attribute.extend(node.attribute)
            replace[id(node)] = new
            drop |= {id(n) for n in chain} | {id(mul)}
        elif node.op_type == "DynamicQuantizeLSTM":
            replace[id(node)] = _float_lstm(g, node, helper)
        elif node.op_type == "DequantizeLinear" and all(i in g.init for i in node.input[1:]):
            gather = g.producer.get(node.input[0])
            if gather is not None and gather.op_type == "Gather" and gather.input[0] in g.init:
                z = g.array(node.input[2]) if len(node.input) > 2 else np.int8(0)
                table = (g.array(gather.input[0]).astype(np.float32) - np.float32(z)) * g.array(
                    node.input[1]
                ).astype(np.float32)
                new = helper.make_node(
                    "Gather",
                    [g.add_init(gather.input[0], table), gather.input[1]],
                    [node.output[0]],
                    name=gather.name,
                )
                new.attribute.extend(gather.attribute)
                replace[id(node)] = new
                drop.add(id(gather))
    nodes = [replace.get(id(n), n) for n in model.graph.node if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    prune_graph(model.graph)
    model.graph.ClearField("value_info")  # shapes of removed integer tensors
    onnx.save(model, str(dst))
    converted = sum(1 for _ in replace)
    _LOGGER.info("Dequantised %d integer ops of %s", converted, Path(src).name)


def _float_bias(g: _Graph, bias_q: str) -> str:
    """The fp32 bias behind ``Reshape(Cast(Floor(Div(bias, scale))))``; reshaped to [C]."""
    node = g.producer.get(bias_q)
    while node is not None and node.op_type in ("Reshape", "Cast", "Floor", "Round"):
        node = g.producer.get(node.input[0])
    if node is None or node.op_type != "Div" or node.input[0] not in g.init:
        raise ValueError(f"{bias_q}: expected a quantised constant bias")
    return g.add_init(node.input[0], g.array(node.input[0]).astype(np.float32).reshape(-1))


def _float_lstm(g: _Graph, node: Any, helper: Any) -> Any:
    """DynamicQuantizeLSTM -> LSTM (weights dequantised and transposed to ONNX layout)."""
    ins = list(node.input) + [""] * (12 - len(node.input))
    x, wq, rq, b, seq, h0, c0, p, ws, wz, rs, rz = ins[:12]

    def dense(q: str, s: str, z: str) -> np.ndarray:
        w = g.array(q).astype(np.float32)  # [dirs, in, 4H]
        scale = g.array(s).astype(np.float32)
        zero = g.array(z).astype(np.float32) if z else np.zeros_like(scale)
        shape = (-1, 1, 1) if scale.ndim == 1 else (scale.shape[0], 1, -1)
        w = (w - zero.reshape(shape)) * scale.reshape(shape)
        return np.ascontiguousarray(w.transpose(0, 2, 1))  # [dirs, 4H, in]

    inputs = [x, g.add_init(wq, dense(wq, ws, wz)), g.add_init(rq, dense(rq, rs, rz)), b, seq]
    inputs += [h0, c0, p]
    while inputs and not inputs[-1]:
        inputs.pop()
    new = helper.make_node("LSTM", inputs, list(node.output), name=node.name)
    new.attribute.extend(node.attribute)
    return new


def prune_graph(graph: Any) -> None:
    """Drop nodes and initializers that no longer reach a graph output, in place (the
    weights rewrite and the windowed model split both use it)."""
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    del graph.node[:]
    graph.node.extend(keep)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


# --------------------------------------------------------------------------- fp -> q4/q8


def quantize_matmul_nbits(src: Path, dst: Path, bits: int, block: int = 32) -> None:
    """Weight-only MatMul quantisation (``MatMulNBits``) with onnxruntime's quantiser."""
    onnx = _import_onnx()
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as err:
        raise ConfigError(
            "engine.model.weights: q4/q8 need onnxruntime's quantisation tools "
            "(onnxruntime>=1.20 with 'onnx' installed)"
        ) from err
    model = onnx.load(str(src))
    quant = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=True)
    quant.process()
    quant.model.save_model_to_file(  # type: ignore[attr-defined]  # an ONNXModel wrapper
        str(dst), use_external_data_format=False
    )
