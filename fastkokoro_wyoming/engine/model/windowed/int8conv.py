"""Rewrite a dynamically quantised graph's convolutions into products MLAS runs fast.

The int8 Kokoro export stores its convolution weights as **uint8** (``ConvInteger`` with a
uint8 weight and zero point). ONNX Runtime's MLAS runs uint8 x uint8 on a generic path, no
faster than fp32 (~80-98 GMAC/s per core on AVX-512), while uint8 activations x **int8**
weights hit its VNNI/AMX kernels (456-664 GMAC/s measured). The weights are 7-bit
(``w - zero_point`` fits int8 exactly), so the int8 form computes the same integers. ORT's
own ``ConvInteger`` with int8 weights exists but is slow (~19 GMAC/s), so each 1-D
convolution becomes an im2col (uint8 slices of the time-major input, concatenated) and a
matrix product against the pre-arranged int8 weight:

* ``MatMulIntegerToFloat`` (com.microsoft) when the conv is followed by the exporter's
  int32-bias add, cast and rescale: the scale and the (already floor-quantised) bias are
  applied inside the product, three full-size elementwise passes fewer;
* ``MatMulInteger`` otherwise: bit-exact with the original (integer sums are exact).

:func:`fold_adain_snake` rewrites the generator's AdaIN followed by a snake activation,
``t = (x - m) / sd * g + b``, ``t + sin(alpha t)^2 / alpha``, into one per-channel affine
``u = x * A + B`` (``A = alpha g / sd``, ``B = alpha (b - m g / sd)``, all ``[1, C, 1]``
from the statistics and style, computed per call for a few hundred floats) and
``(u + sin(u)^2) / alpha``. :func:`pow_to_mul` turns ``Pow(x, 2)`` into ``Mul(x, x)``.

Graph edits only (the ``onnx`` package); whether the result is used is decided by
:mod:`.int8select` (a log-mel check and a micro-benchmark).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .surgery import GraphIndex, prune

_INT64_MAX = np.iinfo(np.int64).max
_MS_DOMAIN = "com.microsoft"


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Builder:
    """New nodes and initializers for one model, with unique names."""

    def __init__(self, model: onnx.ModelProto, prefix: str) -> None:
        self.model = model
        self.prefix = prefix
        self.count = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def name(self, what: str) -> str:
        self.count += 1
        return f"{self.prefix}/{what}_{self.count}"

    def const(self, value: np.ndarray, what: str) -> str:
        name = self.name(what)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], what: str, out: str | None = None, **kw) -> str:
        out = out or self.name(what)
        domain = _MS_DOMAIN if op == "MatMulIntegerToFloat" else None
        self.nodes.append(
            helper.make_node(op, inputs, [out], name=self.name(op), domain=domain, **kw)
        )
        return out


def int8_weight(w: np.ndarray, zero_point: np.ndarray) -> np.ndarray | None:
    """``w - zero_point`` as int8, or None when it does not fit (then the conv is kept)."""
    zp = np.asarray(zero_point).astype(np.int32)
    if zp.size > 1:  # per output channel
        zp = zp.reshape(-1, *([1] * (w.ndim - 1)))
    d = w.astype(np.int32) - zp
    if d.min() < -128 or d.max() > 127:
        return None
    return d.astype(np.int8)


def _im2col(
    b: _Builder, x: str, x_zp: str, c_in: int, k: int, stride: int, dil: int, pads, tm: bool
) -> str:
    """``[1, T_out, K * C_in]`` uint8 columns (k-major) of a ``[1, C_in, T]`` uint8 input
    (``tm``: already time-major, ``[1, T, C_in]``).

    One ``Gather`` of rows ``t * stride + k * dil`` of the time-major, zero-point-padded
    input (indices built per call from its length: a window's length varies): measured
    1.7x faster than K ``Slice``s and a ``Concat``, which copy C_in bytes at a time."""
    c_in_last = x if tm else b.node("Transpose", [x], "xt", perm=[0, 2, 1])
    if any(pads):
        pad = b.const(np.array([0, pads[0], 0, 0, pads[1], 0], np.int64), "pads")
        inputs = [c_in_last, pad, x_zp] if x_zp else [c_in_last, pad]
        c_in_last = b.node("Pad", inputs, "xpad", mode="constant")
    if k == 1 and stride == 1:
        return c_in_last
    length = b.node("Shape", [c_in_last], "len", start=1, end=2)
    limit = b.node("Sub", [length, b.const(np.array([dil * (k - 1)], np.int64), "span")], "lim")
    limit = b.node("Squeeze", [limit, b.const(np.array([0], np.int64), "ax")], "lim")
    zero, step = b.const(np.array(0, np.int64), "zero"), b.const(np.array(stride, np.int64), "s")
    rows = b.node("Range", [zero, limit, step], "rows")
    rows = b.node("Unsqueeze", [rows, b.const(np.array([1], np.int64), "ax")], "rows")
    taps = b.const((dil * np.arange(k, dtype=np.int64))[None, :], "taps")
    index = b.node("Add", [rows, taps], "index")
    index = b.node("Reshape", [index, b.const(np.array([-1], np.int64), "flat")], "index")
    cols = b.node("Gather", [c_in_last, index], "gather", axis=1)
    shape = b.const(np.array([1, -1, k * c_in], np.int64), "shape")
    return b.node("Reshape", [cols, shape], "cols")


def _rescale_chain(idx: GraphIndex, out: str) -> tuple[list[onnx.NodeProto], str, str] | None:
    """The exporter's ``Add(int32 bias) -> Cast(float) -> Mul(scale)`` after a ConvInteger:
    (its nodes, the scale tensor, the int32 bias reshaped), or None."""
    cons = idx.consumers.get(out, [])
    if len(cons) != 1 or cons[0].op_type != "Add":
        return None
    add = cons[0]
    bias = add.input[1] if add.input[0] == out else add.input[0]
    cast = idx.consumers.get(add.output[0], [])
    if len(cast) != 1 or cast[0].op_type != "Cast" or _attrs(cast[0]).get("to") != 1:
        return None
    mul = idx.consumers.get(cast[0].output[0], [])
    if len(mul) != 1 or mul[0].op_type != "Mul":
        return None
    scale = next((i for i in mul[0].input if i != cast[0].output[0]), "")
    reshape = idx.producer.get(bias)
    if not scale or reshape is None or reshape.op_type != "Reshape":
        return None
    return [add, cast[0], mul[0]], scale, reshape.input[0]


def _weight_scale(idx: GraphIndex, scale: str, x_scale: str) -> str | None:
    """The weight's constant scale inside ``Mul(x_scale, w_scale)``, or None."""
    node = idx.producer.get(scale)
    if node is None or node.op_type != "Mul" or x_scale not in node.input:
        return None
    other = next((i for i in node.input if i != x_scale), x_scale)
    v = idx.const(other)
    return other if v is not None and v.size == 1 else None


def _eligible(idx: GraphIndex, node: onnx.NodeProto) -> np.ndarray | None:
    """The int8 weight of a 1-D, group-1 ``ConvInteger`` with a constant uint8 weight that
    fits int8, else None."""
    if node.op_type != "ConvInteger" or len(node.input) < 2:
        return None
    w = idx.const(node.input[1])
    wzp = idx.const(node.input[3]) if len(node.input) > 3 and node.input[3] else np.zeros(1)
    at = _attrs(node)
    if w is None or w.ndim != 3 or w.dtype != np.uint8 or wzp is None:
        return None
    if at.get("group", 1) != 1 or at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    return int8_weight(w, wzp)


def _time_major_quantizers(idx: GraphIndex, b: _Builder, convs: set[int]) -> set[str]:
    """Quantise time-major: a ``DynamicQuantizeLinear`` (per-tensor, so layout-blind) whose
    uint8 output feeds only rewritten convs gets its float input transposed instead, so
    ONNX Runtime's transpose optimiser can cancel it against the previous conv's output
    transpose through the elementwise ops between. Returns the now time-major outputs."""
    out: set[str] = set()
    for dql in idx.nodes:
        if dql.op_type != "DynamicQuantizeLinear":
            continue
        users = idx.consumers.get(dql.output[0], [])
        if not users or any(id(u) not in convs or u.input[0] != dql.output[0] for u in users):
            continue
        t = b.name("xt")
        idx_pos = b.nodes  # placed with the conv's nodes: topological sort orders them
        idx_pos.append(helper.make_node("Transpose", [dql.input[0]], [t], perm=[0, 2, 1]))
        dql.input[0] = t
        out.add(dql.output[0])
    return out


def rewrite_convs(model: onnx.ModelProto, fuse_rescale: bool = True) -> int:
    """Every eligible ``ConvInteger`` (:func:`_eligible`) -> im2col + int8-weight product,
    in place. Returns how many were rewritten."""
    idx = GraphIndex(model.graph)
    b = _Builder(model, "int8conv")
    weights = {id(n): w for n in idx.nodes if (w := _eligible(idx, n)) is not None}
    time_major = _time_major_quantizers(idx, b, set(weights))
    replace: dict[int, list[onnx.NodeProto]] = {}
    extra = list(b.nodes)
    b.nodes.clear()
    for node in idx.nodes:
        w8 = weights.get(id(node))
        if w8 is None:
            continue
        at = _attrs(node)
        c_out, c_in, k = w8.shape
        stride = list(at.get("strides", [1]))[0]
        dil = list(at.get("dilations", [1]))[0]
        pads = list(at.get("pads", [0, 0]))
        x, x_zp = node.input[0], node.input[2] if len(node.input) > 2 else ""
        start = len(b.nodes)
        cols = _im2col(b, x, x_zp, c_in, k, stride, dil, pads, x in time_major)
        wmat = b.const(np.ascontiguousarray(w8.transpose(2, 1, 0).reshape(k * c_in, c_out)), "w")
        zero = b.const(np.zeros((), np.int8), "wzp")
        chain = _rescale_chain(idx, node.output[0]) if fuse_rescale else None
        dql = idx.producer.get(x)
        quantised = dql is not None and dql.op_type == "DynamicQuantizeLinear"
        x_scale = dql.output[1] if quantised and dql is not None else ""
        w_scale = _weight_scale(idx, chain[1], x_scale) if chain and x_scale else None
        if chain and w_scale:
            nodes, scale, bias_q = chain
            # today's bias exactly: floor(b / scale) * scale, a [C_out] vector per call
            bias = b.node("Cast", [bias_q], "bias", to=TensorProto.FLOAT)
            bias = b.node("Mul", [bias, scale], "bias")
            mm = b.node(
                "MatMulIntegerToFloat", [cols, wmat, x_scale, w_scale, x_zp, zero, bias], "mm"
            )
            b.node("Transpose", [mm], "y", out=nodes[-1].output[0], perm=[0, 2, 1])
            replaced = nodes[-1]  # the conv, bias add and cast are left unused: pruned
        else:
            mm = b.node("MatMulInteger", [cols, wmat, x_zp, zero], "mm")
            b.node("Transpose", [mm], "y", out=node.output[0], perm=[0, 2, 1])
            replaced = node
        replace[id(replaced)] = b.nodes[start:]
    if replace:
        b.nodes = extra + b.nodes
        first = next(iter(replace))
        replace[first] = extra + replace[first]
        _splice(model, idx, replace, b)
    return len(replace)


def _splice(model, idx: GraphIndex, replace, b: _Builder) -> None:
    """Put each replaced node's new nodes in its place (they write its output), drop what
    is left unused, and restore topological order."""
    nodes: list[onnx.NodeProto] = []
    for n in idx.nodes:
        nodes.extend(replace.get(id(n), [n]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(b.inits)
    if not any(o.domain == _MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(_MS_DOMAIN, 1))
    _topological_sort(model)
    prune(model)  # walks back from the outputs: needs the order


def _topological_sort(model: onnx.ModelProto) -> None:
    """Reorder nodes so every input is produced before use (new nodes may be appended
    after their consumers)."""
    g = model.graph
    ready = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending = list(g.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in ready for i in n.input):
                ordered.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    del g.node[:]
    g.node.extend(ordered)


# --------------------------------------------------------------------------- AdaIN + snake


def _other(node: onnx.NodeProto, name: str) -> str | None:
    ins = list(node.input)
    if len(ins) != 2 or name not in ins:
        return None
    return ins[1] if ins[0] == name else ins[0]


def fold_adain_snake(model: onnx.ModelProto, time_inputs: Iterable[str]) -> int:
    """``Sub m -> Div sd -> Mul g -> Add b -> snake`` -> ``Mul A -> Add B -> snake'``, where
    ``m, sd, g, b`` are not computed from ``time_inputs`` (per-channel), in place."""
    idx = GraphIndex(model.graph)
    timed = idx.descendants(time_inputs)
    b = _Builder(model, "adain_snake")
    replace: dict[int, list[onnx.NodeProto]] = {}
    done = 0
    for sin in idx.nodes:
        if sin.op_type != "Sin":
            continue
        match = _match_snake(idx, sin, timed)
        if match is None:
            continue
        x, m, sd, g, bias, alpha, recip, final = match
        start = len(b.nodes)
        gs = b.node("Div", [g, sd], "g_sd")
        a = b.node("Mul", [gs, alpha], "A")
        shift = b.node("Sub", [bias, b.node("Mul", [m, gs], "m_g")], "b_m")
        bb = b.node("Mul", [shift, alpha], "B")
        u = b.node("Add", [b.node("Mul", [x, a], "xA"), bb], "u")
        s = b.node("Sin", [u], "sin")
        v = b.node("Add", [u, b.node("Mul", [s, s], "sin2")], "v")
        b.node("Mul", [v, recip], "snake", out=final.output[0])
        replace[id(final)] = b.nodes[start:]  # the old chain is left unused: pruned
        done += 1
    if done:
        _splice(model, idx, replace, b)
    return done


def _match_snake(idx: GraphIndex, sin: onnx.NodeProto, timed: set[str]):
    """The tensors of ``t + r * sin(alpha * t)^2`` with ``t = (x - m) / sd * g + b``."""

    def prod(name: str, op: str) -> onnx.NodeProto | None:
        n = idx.producer.get(name)
        return n if n is not None and n.op_type == op else None

    scaled = prod(sin.input[0], "Mul")
    if scaled is None:
        return None
    alpha = next((i for i in scaled.input if idx.const(i) is not None), None)
    t = _other(scaled, alpha) if alpha else None
    add_b = prod(t, "Add") if t else None
    if add_b is None or alpha is None or t is None:
        return None
    for cand in add_b.input:
        mul_g = prod(cand, "Mul")
        bias = _other(add_b, cand)
        if mul_g is None or bias is None or bias in timed:
            continue
        for cand2 in mul_g.input:
            div = prod(cand2, "Div")
            g = _other(mul_g, cand2)
            if div is None or g is None or g in timed or div.input[1] in timed:
                continue
            sub = prod(div.input[0], "Sub")
            if sub is None or sub.input[1] in timed:
                continue
            tail = _snake_tail(idx, sin, t, alpha)
            if tail is None:
                continue
            final, recip = tail
            return sub.input[0], sub.input[1], div.input[1], g, bias, alpha, recip, final
    return None


def _snake_tail(idx: GraphIndex, sin: onnx.NodeProto, t: str, alpha: str):
    """``Add(t, Mul(r, Pow(sin, 2) | Mul(sin, sin)))`` with ``r = 1 / alpha``; and ``t``
    used only there and by the snake's scaling."""
    sq = idx.consumers.get(sin.output[0], [])
    if len(sq) != 1 or sq[0].op_type not in ("Pow", "Mul"):
        return None
    sq = sq[0]
    if sq.op_type == "Pow" and not _is_const(idx, sq.input[1], 2.0):
        return None
    if sq.op_type == "Mul" and list(sq.input) != [sin.output[0]] * 2:
        return None
    mul_r = idx.consumers.get(sq.output[0], [])
    if len(mul_r) != 1 or mul_r[0].op_type != "Mul":
        return None
    recip = _other(mul_r[0], sq.output[0])
    r, a = idx.const(recip) if recip else None, idx.const(alpha)
    if r is None or a is None or r.shape != a.shape or not np.allclose(r * a, 1.0, atol=1e-5):
        return None
    final = idx.consumers.get(mul_r[0].output[0], [])
    if len(final) != 1 or final[0].op_type != "Add" or t not in final[0].input:
        return None
    if {id(c) for c in idx.consumers.get(t, [])} != {id(final[0]), id(idx.producer[sin.input[0]])}:
        return None
    return final[0], recip


def _is_const(idx: GraphIndex, name: str, value: float) -> bool:
    v = idx.const(name)
    return v is not None and v.size == 1 and float(v.reshape(-1)[0]) == value


def pow_to_mul(model: onnx.ModelProto) -> int:
    """``Pow(x, 2)`` -> ``Mul(x, x)`` (the same float result, a cheaper kernel), in place."""
    idx = GraphIndex(model.graph)
    done = 0
    for n in model.graph.node:
        if n.op_type == "Pow" and _is_const(idx, n.input[1], 2.0):
            n.op_type = "Mul"
            n.input[1] = n.input[0]
            done += 1
    if done:
        prune(model)
    return done
