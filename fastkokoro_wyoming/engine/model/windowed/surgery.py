"""Generic ONNX graph surgery the windowed decoder needs: cut, rename, and re-wire norms.

Kept free of anything Kokoro-specific so it can be unit-tested on tiny synthetic graphs:
:mod:`.graphs` decides *where* to cut, this module only does the cutting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..weights import prune_graph
from .errors import GraphNotSupported

__all__ = ["GraphNotSupported", "GraphIndex", "extract", "find_norms", "prune", "rename"]


class GraphIndex:
    """Producers, consumers and constant values of one graph (built once, read many times)."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.nodes = list(graph.node)
        self.order = {id(n): i for i, n in enumerate(self.nodes)}
        self.producer: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.nodes:
            for i in dict.fromkeys(n.input):  # Mul(d, d) consumes d once
                if i:
                    self.consumers[i].append(n)
        self.initializers = {t.name: t for t in graph.initializer}
        self.inputs = {i.name for i in graph.input}

    def const(self, name: str) -> np.ndarray | None:
        """Value of an initializer or Constant node output, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
        return None

    def descendants(self, tensors: Iterable[str]) -> set[str]:
        """Every tensor computed (transitively) from ``tensors``, themselves included."""
        seen = set(tensors)
        stack = list(seen)
        while stack:
            for node in self.consumers.get(stack.pop(), ()):
                for o in node.output:
                    if o and o not in seen:
                        seen.add(o)
                        stack.append(o)
        return seen

    def ancestors(self, tensors: Iterable[str], stop: Iterable[str] = ()) -> set[str]:
        """Every tensor ``tensors`` are computed from, not looking past ``stop``."""
        stop = set(stop)
        seen = set(tensors)
        stack = [t for t in seen if t not in stop]
        while stack:
            node = self.producer.get(stack.pop())
            if node is None:
                continue
            for i in node.input:
                if i and i not in seen:
                    seen.add(i)
                    if i not in stop:
                        stack.append(i)
        return seen


def extract(
    model: onnx.ModelProto,
    inputs: dict[str, Any],
    outputs: list[str],
    allowed_graph_inputs: Iterable[str] = (),
) -> onnx.ModelProto:
    """The sub-model computing ``outputs`` from ``inputs`` (name -> ValueInfo or elem type).

    Walks back from the outputs and stops at the cut inputs and initializers; reaching any
    other graph input means the cut does not separate the graph, which is reported rather
    than silently pulling the rest of the model in (what ``onnx.utils.Extractor`` would do,
    after running shape inference over all 3,600 nodes).
    """
    idx = GraphIndex(model.graph)
    allowed = set(allowed_graph_inputs)
    needed: set[int] = set()
    used_inits: set[str] = set()
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        t = stack.pop()
        if not t or t in seen:
            continue
        seen.add(t)
        if t in inputs:
            continue
        if t in idx.initializers:
            used_inits.add(t)
            continue
        node = idx.producer.get(t)
        if node is None:
            if t in idx.inputs and t in allowed:
                continue
            raise GraphNotSupported(f"cut leaks: {t!r} is needed and is not a cut input")
        if id(node) not in needed:
            needed.add(id(node))
            stack.extend(node.input)
    nodes = [n for n in idx.nodes if id(n) in needed]
    graph_inputs = []
    original = {i.name: i for i in model.graph.input}
    for name in [*inputs, *[a for a in allowed if a in seen]]:
        spec = inputs.get(name, original.get(name))
        if isinstance(spec, onnx.ValueInfoProto):
            vi = onnx.ValueInfoProto()
            vi.CopyFrom(spec)
            vi.name = name
        else:
            vi = helper.make_tensor_value_info(name, spec or TensorProto.FLOAT, None)
        graph_inputs.append(vi)
    graph = helper.make_graph(
        nodes,
        model.graph.name or "cut",
        graph_inputs,
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializer=[t for t in model.graph.initializer if t.name in used_inits],
    )
    out = helper.make_model(graph, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


def rename(model: onnx.ModelProto, mapping: dict[str, str]) -> None:
    """Rename tensors everywhere (node inputs/outputs, graph inputs/outputs), in place."""
    g = model.graph
    for n in g.node:
        for i, name in enumerate(n.input):
            if name in mapping:
                n.input[i] = mapping[name]
        for i, name in enumerate(n.output):
            if name in mapping:
                n.output[i] = mapping[name]
    for vi in [*g.input, *g.output]:
        if vi.name in mapping:
            vi.name = mapping[vi.name]


def prune(model: onnx.ModelProto) -> None:
    """Drop nodes and initializers no graph output depends on, in place."""
    prune_graph(model.graph)


# --------------------------------------------------------------------------- instance norms


@dataclass(frozen=True)
class NormSite:
    """One instance normalisation over the last axis of a ``[1, C, T]`` tensor.

    ``kind`` is ``decomposed`` (ReduceMean -> Sub -> Mul|Pow -> ReduceMean -> Add eps ->
    Sqrt -> Div, what torch's exporter writes for ``InstanceNorm1d`` without affine) or
    ``op`` (an ``InstanceNormalization`` node).
    """

    kind: str
    node: str  # name of the mean ReduceMean, or of the InstanceNormalization node
    x: str  # the normalised tensor
    mean: str  # decomposed: the mean tensor; op: ""
    var: str  # decomposed: the variance tensor; op: ""
    square: str  # decomposed: the node squaring the deviation (dropped with the stats)


def _axes(idx: GraphIndex, node: onnx.NodeProto) -> list[int] | None:
    for a in node.attribute:
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1]:
        v = idx.const(node.input[1])
        return None if v is None else [int(x) for x in np.atleast_1d(v)]
    return None


def _keepdims(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "keepdims"), 1)


def find_norms(model: onnx.ModelProto) -> list[NormSite]:
    """Every instance norm over the time axis (axis 2 or -1), in graph order."""
    idx = GraphIndex(model.graph)
    sites: list[NormSite] = []
    for node in idx.nodes:
        if node.op_type == "InstanceNormalization":
            sites.append(NormSite("op", node.name or node.output[0], node.input[0], "", "", ""))
            continue
        if node.op_type != "ReduceMean" or _axes(idx, node) not in ([2], [-1]):
            continue
        if not _keepdims(node):
            continue
        x, mean = node.input[0], node.output[0]
        subs = [c for c in idx.consumers[mean] if c.op_type == "Sub" and list(c.input) == [x, mean]]
        if len(subs) != 1 or len(idx.consumers[mean]) != 1:
            continue
        dev = subs[0].output[0]
        squares = [
            c
            for c in idx.consumers[dev]
            if (c.op_type == "Mul" and list(c.input) == [dev, dev])
            or (c.op_type == "Pow" and c.input[0] == dev and _is_two(idx, c.input[1]))
        ]
        if len(squares) != 1:
            continue
        sq = squares[0]
        var_nodes = idx.consumers[sq.output[0]]
        if len(var_nodes) != 1 or var_nodes[0].op_type != "ReduceMean":
            continue
        vnode = var_nodes[0]
        if _axes(idx, vnode) != _axes(idx, node):
            continue
        var = vnode.output[0]
        adds = idx.consumers[var]
        if len(adds) != 1 or adds[0].op_type != "Add":
            continue
        sqrts = idx.consumers[adds[0].output[0]]
        if len(sqrts) != 1 or sqrts[0].op_type != "Sqrt":
            continue
        divs = idx.consumers[sqrts[0].output[0]]
        if len(divs) != 1 or divs[0].op_type != "Div" or divs[0].input[0] != dev:
            continue
        sites.append(NormSite("decomposed", node.name or mean, x, mean, var, sq.name or ""))
    return sites


def _is_two(idx: GraphIndex, name: str) -> bool:
    v = idx.const(name)
    return v is not None and v.size == 1 and float(v.reshape(-1)[0]) == 2.0


def _main_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def _reduce_mean(model: onnx.ModelProto, x: str, out: str, name: str) -> list[onnx.NodeProto]:
    """``ReduceMean(x, axes=[2], keepdims=1)`` in the model's opset (axes moved to an input
    in opset 18)."""
    if _main_opset(model) >= 18:
        axes = f"{name}_axes"
        model.graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), axes))
        return [helper.make_node("ReduceMean", [x, axes], [out], name=name, keepdims=1)]
    return [helper.make_node("ReduceMean", [x], [out], name=name, axes=[2], keepdims=1)]


def _op_norm_parts(idx: GraphIndex, node: onnx.NodeProto) -> tuple[float, str, str]:
    eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
    for name in node.input[1:3]:
        if idx.const(name) is None:
            raise GraphNotSupported(f"{node.name}: InstanceNormalization scale/bias not constant")
    return eps, node.input[1], node.input[2]


def with_stats_outputs(model: onnx.ModelProto, sites: list[NormSite]) -> list[str]:
    """Make every norm's per-channel mean and variance graph outputs ``norm{k}_mean|var``
    (``[1, C, 1]``), in place; the audio output is dropped so only what the last norm
    needs is computed. Returns the output names."""
    idx = GraphIndex(model.graph)
    names: list[str] = []
    extra: list[onnx.NodeProto] = []
    for k, site in enumerate(sites):
        m, v = f"norm{k:02d}_mean", f"norm{k:02d}_var"
        if site.kind == "decomposed":
            extra.append(helper.make_node("Identity", [site.mean], [m], name=f"{m}_out"))
            extra.append(helper.make_node("Identity", [site.var], [v], name=f"{v}_out"))
        else:
            node = next(n for n in idx.nodes if (n.name or n.output[0]) == site.node)
            extra += _reduce_mean(model, node.input[0], m, f"{m}_rm")
            d, sq = f"{m}_dev", f"{m}_sq"
            extra.append(helper.make_node("Sub", [node.input[0], m], [d], name=f"{m}_sub"))
            extra.append(helper.make_node("Mul", [d, d], [sq], name=f"{m}_mul"))
            extra += _reduce_mean(model, sq, v, f"{v}_rm")
        names += [m, v]
    model.graph.node.extend(extra)
    del model.graph.output[:]
    model.graph.output.extend(
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names
    )
    prune(model)
    return names


def with_stats_inputs(
    model: onnx.ModelProto, sites: list[NormSite], channels: list[int] | None = None
) -> list[str]:
    """Feed every norm's mean and variance from graph inputs ``norm{k}_mean|var``, in place.

    The decomposed pattern loses its two ReduceMeans and the squaring; the rest (Sub, Add
    eps, Sqrt, Div) stays, so with the statistics the whole input would give, the output is
    the original computation. An ``InstanceNormalization`` node is replaced by the same
    arithmetic with its scale and bias broadcast over ``[1, C, 1]``.
    """
    idx = GraphIndex(model.graph)
    drop: set[int] = set()
    replace: dict[int, list[onnx.NodeProto]] = {}
    mapping: dict[str, str] = {}
    names: list[str] = []
    for k, site in enumerate(sites):
        m, v = f"norm{k:02d}_mean", f"norm{k:02d}_var"
        names += [m, v]
        if site.kind == "decomposed":
            for n in idx.nodes:
                if n.output[0] in (site.mean, site.var) or (n.name and n.name == site.square):
                    drop.add(id(n))
            mapping[site.mean], mapping[site.var] = m, v
            continue
        node = next(n for n in idx.nodes if (n.name or n.output[0]) == site.node)
        eps, scale, bias = _op_norm_parts(idx, node)
        p = f"norm{k:02d}"
        s3 = numpy_helper.from_array(
            idx.const(scale).astype(np.float32).reshape(1, -1, 1), f"{p}_scale"
        )
        b3 = numpy_helper.from_array(
            idx.const(bias).astype(np.float32).reshape(1, -1, 1), f"{p}_bias"
        )
        e = numpy_helper.from_array(np.array(eps, np.float32), f"{p}_eps")
        model.graph.initializer.extend([s3, b3, e])
        x, y = node.input[0], node.output[0]
        replace[id(node)] = [
            helper.make_node("Sub", [x, m], [f"{p}_dev"], name=f"{p}_sub"),
            helper.make_node("Add", [v, f"{p}_eps"], [f"{p}_ve"], name=f"{p}_add"),
            helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"], name=f"{p}_sqrt"),
            helper.make_node("Div", [f"{p}_dev", f"{p}_sd"], [f"{p}_n"], name=f"{p}_div"),
            helper.make_node("Mul", [f"{p}_n", f"{p}_scale"], [f"{p}_ns"], name=f"{p}_mul"),
            helper.make_node("Add", [f"{p}_ns", f"{p}_bias"], [y], name=f"{p}_addb"),
        ]
    nodes: list[onnx.NodeProto] = []
    for n in idx.nodes:
        if id(n) in drop:
            continue
        nodes.extend(replace.get(id(n), [n]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    rename(model, mapping)
    for k, name in enumerate(names):
        shape = [1, channels[k // 2], 1] if channels else [1, f"c{k // 2}", 1]
        model.graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    prune(model)
    return names
