"""Cut the windowed generator into fp32 source / convolution trunk / iSTFT, for OpenVINO.

OpenVINO runs the generator's convolutions several times faster than ONNX Runtime on CPUs
with bf16 (AMX, AVX512_BF16), but not all of the generator (measured on the prototype,
``capacity.md``): in bf16 the sine source's phase (thousands of radians) loses every
digit, and OpenVINO's STFT flips the phase of near-zero bins by pi (~3 dB log-mel). So the
unmodified generator (``generator.onnx``, with its norm-statistics inputs) is cut at two
tensors found by structure:

* ``har``: the ``Concat`` of the STFT's magnitude and phase (the harmonic source's
  spectrum, what the noise convolutions read): everything before it, from ``f0`` and
  ``phase`` alone, is **pre** (sine source + STFT, fp32, ONNX Runtime);
* ``spec``: the ``conv_post`` output that the iSTFT's ``Exp`` / ``Sin`` slice: everything
  after it is **post** (iSTFT, fp32, ONNX Runtime);
* between them, **trunk** (``xgen, style, norm stats, har -> spec``): the upsampling,
  resblocks and noise branches, ~99 % of the multiply-adds, for OpenVINO.

The trunk's int8 weights are dequantised to fp32 first (``weights.dequantize``: OpenVINO
then picks bf16 itself) and each AdaIN + snake is folded into one affine
(``int8conv.fold_adain_snake``). Written once to ``<graphs>/openvino/`` beside the other
graphs, under a temporary name then renamed, like them; a few seconds of onnx work.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import GraphNotSupported
from .graphs import WindowedGraphs

_LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 2  # 2: the trunk's xgen and har inputs carry their rank
SUBDIR = "openvino"
PARTS = ("pre", "trunk", "post")
_TIME_INPUTS = ("xgen", "f0", "phase")


@dataclass(frozen=True)
class TrunkGraphs:
    """The three cut graphs on disk and the names of the trunk's inputs."""

    directory: Path
    trunk_inputs: tuple[str, ...]  # xgen, style, norm00_mean, ..., har

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.onnx"


def trunk_dir(graphs: WindowedGraphs) -> Path:
    return graphs.directory / SUBDIR


def derive_trunk(graphs: WindowedGraphs) -> TrunkGraphs:
    """The cut graphs of ``graphs``' generator, from the cache or derived now (seconds).
    Raises GraphNotSupported when the generator's STFT or iSTFT is not recognised."""
    out = trunk_dir(graphs)
    meta_path = out / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT_VERSION:
            return TrunkGraphs(out, tuple(meta["trunk_inputs"]))
    try:
        import onnx
    except ImportError as err:
        raise GraphNotSupported("cutting the generator needs the 'onnx' package") from err
    from ..weights import dequantize
    from .int8conv import fold_adain_snake, pow_to_mul

    t0 = time.perf_counter()
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        fp32 = tmp / "generator_fp32.onnx"
        dequantize(graphs.directory / "generator.onnx", fp32)  # not the int8 rewrite
        model = onnx.load(str(fp32))
        fp32.unlink()
        folded = fold_adain_snake(model, _TIME_INPUTS)
        pow_to_mul(model)
        parts = cut(model)
        sines = polynomial_sin(parts["trunk"])
        for name, part in parts.items():
            onnx.save(part, str(tmp / f"{name}.onnx"))
        inputs = tuple(i.name for i in parts["trunk"].graph.input)
        meta = {
            "format": FORMAT_VERSION,
            "trunk_inputs": list(inputs),
            "folded_adain_snake": folded,
            "polynomial_sin": sines,
            "nodes": {n: len(p.graph.node) for n, p in parts.items()},
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _LOGGER.info("Generator cut for OpenVINO in %.1f s: %s", meta["seconds"], meta["nodes"])
    return TrunkGraphs(out, inputs)


def find_cuts(model: Any) -> tuple[str, str]:
    """``(har, spec)``: the STFT's magnitude/phase ``Concat`` and the tensor the iSTFT's
    ``Exp`` slices; GraphNotSupported unless there is exactly one of each."""
    from .surgery import GraphIndex

    idx = GraphIndex(model.graph)
    stfts = [n for n in idx.nodes if n.op_type == "STFT"]
    if len(stfts) != 1:
        raise GraphNotSupported(f"expected one STFT in the generator, found {len(stfts)}")
    after = idx.descendants([stfts[0].output[0]])
    concats = [n for n in idx.nodes if n.op_type == "Concat" and n.output[0] in after]
    if not concats:
        raise GraphNotSupported("no Concat of the STFT's magnitude and phase")
    har = concats[0].output[0]  # nodes are in topological order: the first after the STFT
    exps = [n for n in idx.nodes if n.op_type == "Exp"]
    if len(exps) != 1:
        raise GraphNotSupported(f"expected one Exp (the iSTFT magnitude), found {len(exps)}")
    sliced = idx.producer.get(exps[0].input[0])
    if sliced is None or sliced.op_type != "Slice":
        raise GraphNotSupported("the iSTFT magnitude is not a Slice of conv_post's output")
    spec = sliced.input[0]
    if har not in idx.ancestors([spec]):
        raise GraphNotSupported("the STFT's output does not reach conv_post")
    return har, spec


def polynomial_sin(model: Any) -> int:
    """Every ``Sin`` -> range reduction by pi and an odd Taylor polynomial (degree 13,
    error < 1e-9 on [-pi/2, pi/2]), in place; returns how many. The trunk's ``Sin`` s are
    the snakes' (``sin(u)^2``, so a sign flip from the reduction by pi does not matter):
    OpenVINO runs ``Sin`` on a reference kernel (seen on the prototype), a polynomial in
    its JIT-fused elementwise code."""
    import numpy as np
    from onnx import helper, numpy_helper

    inits: list[Any] = []
    count = 0

    def const(value: float, name: str) -> str:
        if name not in {t.name for t in inits}:
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    pi_hi = float(np.float32(np.pi))
    names = {
        "inv_pi": const(1.0 / np.pi, "polysin/inv_pi"),
        "pi_hi": const(pi_hi, "polysin/pi_hi"),
        "pi_lo": const(np.pi - pi_hi, "polysin/pi_lo"),
        "one": const(1.0, "polysin/one"),
    }
    coefficients = [const((-1) ** k / math.factorial(2 * k + 1), f"polysin/c{2 * k + 1}")
                    for k in range(1, 7)]  # fmt: skip
    nodes: list[Any] = []

    def op(kind: str, a: str, b: str | None, tag: str) -> str:
        name = f"polysin/{count}/{tag}"
        nodes.append(helper.make_node(kind, [a] + ([b] if b else []), [name], name=name))
        return name

    for node in model.graph.node:
        if node.op_type != "Sin":
            nodes.append(node)
            continue
        count += 1
        u, out = node.input[0], node.output[0]
        k = op("Round", op("Mul", u, names["inv_pi"], "q"), None, "k")
        r = op("Sub", op("Sub", u, op("Mul", k, names["pi_hi"], "khi"), "r1"),
               op("Mul", k, names["pi_lo"], "klo"), "r")  # fmt: skip
        r2 = op("Mul", r, r, "r2")
        acc = coefficients[-1]
        for i, c in enumerate(reversed(coefficients[:-1])):
            acc = op("Add", op("Mul", acc, r2, f"h{i}"), c, f"a{i}")
        acc = op("Add", op("Mul", acc, r2, "h_last"), names["one"], "a_last")
        nodes.append(helper.make_node("Mul", [acc, r], [out], name=f"polysin/{count}/sin"))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return count


def cut(model: Any) -> dict[str, Any]:
    """``pre``, ``trunk`` and ``post`` of a (float) generator graph."""
    from .surgery import extract, rename

    har, spec = find_cuts(model)
    originals = {i.name: i for i in model.graph.input}
    audio = model.graph.output[0].name
    pre = extract(model, {"f0": originals["f0"], "phase": originals["phase"]}, [har])
    rename(pre, {har: "har"})
    keep = {n: vi for n, vi in originals.items() if n not in ("f0", "phase")}
    trunk = extract(model, {**keep, har: None}, [spec])
    rename(trunk, {har: "har", spec: "spec"})
    _rank3(trunk, {"xgen": [1, 512, "steps"], "har": [1, "bins", "har_steps"]})
    post = extract(model, {spec: None}, [audio])
    rename(post, {spec: "spec"})
    return {"pre": pre, "trunk": trunk, "post": post}


def _rank3(model: Any, shapes: dict[str, list[int | str]]) -> None:
    """Give these graph inputs a shape (symbolic where it varies), in place: the cut leaves
    them rankless (the export's own inputs are), and OpenVINO's ONNX reader refuses a
    ``Conv`` whose input rank is unknown before any reshape can fix it."""
    from onnx import TensorProto, helper

    for i, vi in enumerate(model.graph.input):
        if vi.name in shapes:
            new = helper.make_tensor_value_info(vi.name, TensorProto.FLOAT, shapes[vi.name])
            model.graph.input[i].CopyFrom(new)
