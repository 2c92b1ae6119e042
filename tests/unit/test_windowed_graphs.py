"""Windowed decoder graph surgery on small synthetic graphs (no Kokoro model needed)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fastkokoro_wyoming.engine.model.windowed.decoder import window_bounds, window_sizes
from fastkokoro_wyoming.engine.model.windowed.graphs import find_cuts
from fastkokoro_wyoming.engine.model.windowed.norm_stats import NormPriors, split_stats
from fastkokoro_wyoming.engine.model.windowed.surgery import (
    GraphNotSupported,
    extract,
    find_norms,
    with_stats_inputs,
    with_stats_outputs,
)

C = 3


def _init(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _norm_model(kind: str, opset: int = 18) -> onnx.ModelProto:
    """x [1,C,T] -> Conv(1x1) -> instance norm over T -> *2 -> Conv(1x1) -> norm -> y."""
    rng = np.random.default_rng(0)
    inits = [_init(f"w{k}", rng.normal(size=(C, C, 1)).astype(np.float32)) for k in (0, 1)]
    inits += [_init("two", np.float32(2.0)), _init("eps", np.float32(1e-5))]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["h0"])]
    if opset >= 18:
        inits.append(_init("axes", np.array([2], np.int64)))

    def rmean(i: str, o: str) -> onnx.NodeProto:
        if opset >= 18:
            return helper.make_node("ReduceMean", [i, "axes"], [o], keepdims=1)
        return helper.make_node("ReduceMean", [i], [o], axes=[2], keepdims=1)

    def norm(x: str, y: str, k: int) -> list[onnx.NodeProto]:
        if kind == "op":
            inits.extend(
                [
                    _init(f"s{k}", rng.normal(size=C).astype(np.float32)),
                    _init(f"b{k}", np.ones(C, np.float32)),
                ]
            )
            return [helper.make_node("InstanceNormalization", [x, f"s{k}", f"b{k}"], [y])]
        sq = (
            helper.make_node("Pow", [f"d{k}", "two"], [f"q{k}"])
            if k
            else helper.make_node("Mul", [f"d{k}", f"d{k}"], [f"q{k}"])
        )
        return [
            rmean(x, f"m{k}"),
            helper.make_node("Sub", [x, f"m{k}"], [f"d{k}"]),
            sq,
            rmean(f"q{k}", f"v{k}"),
            helper.make_node("Add", [f"v{k}", "eps"], [f"ve{k}"]),
            helper.make_node("Sqrt", [f"ve{k}"], [f"sd{k}"]),
            helper.make_node("Div", [f"d{k}", f"sd{k}"], [y]),
        ]

    nodes += norm("h0", "n0", 0)
    nodes += [
        helper.make_node("Mul", ["n0", "two"], ["h1a"]),
        helper.make_node("Conv", ["h1a", "w1"], ["h1"]),
    ]
    nodes += norm("h1", "y", 1)
    graph = helper.make_graph(
        nodes,
        "norms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, C, "T"])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feed)


@pytest.mark.parametrize("kind,opset", [("decomposed", 18), ("decomposed", 13), ("op", 18)])
def test_norm_stats_as_outputs_then_inputs_reproduce_the_model(kind, opset):
    model = _norm_model(kind, opset)
    onnx.checker.check_model(model)
    sites = find_norms(model)
    assert [s.kind for s in sites] == [kind, kind]
    x = np.random.default_rng(1).normal(size=(1, C, 37)).astype(np.float32)
    (ref,) = _run(model, {"x": x})

    stats_model = onnx.ModelProto()
    stats_model.CopyFrom(model)
    names = with_stats_outputs(stats_model, find_norms(stats_model))
    assert names == ["norm00_mean", "norm00_var", "norm01_mean", "norm01_var"]
    stats = dict(zip(names, _run(stats_model, {"x": x}), strict=True))
    h0 = _run(extract(model, {"x": None}, ["h0"]), {"x": x})[0]
    np.testing.assert_allclose(stats["norm00_mean"], h0.mean(axis=2, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(stats["norm00_var"], h0.var(axis=2, keepdims=True), rtol=1e-4)

    fed = onnx.ModelProto()
    fed.CopyFrom(model)
    with_stats_inputs(fed, find_norms(fed), [C, C])
    assert not [n for n in fed.graph.node if n.op_type in ("ReduceMean", "InstanceNormalization")]
    onnx.checker.check_model(fed)
    (out,) = _run(fed, {"x": x, **stats})
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)

    # a window with the whole input's statistics equals the whole output there (1x1 convs)
    (part,) = _run(fed, {"x": np.ascontiguousarray(x[:, :, 10:20]), **stats})
    np.testing.assert_allclose(part, ref[:, :, 10:20], rtol=1e-4, atol=1e-5)


def test_reduce_means_that_are_not_instance_norms_are_left_alone():
    model = _norm_model("decomposed")
    for n in model.graph.node:  # variance over the channel axis: a layer norm, not ours
        if n.op_type == "ReduceMean" and n.output[0] == "v1":
            n.input[1] = "axes1"
    model.graph.initializer.append(_init("axes1", np.array([1], np.int64)))
    assert len(find_norms(model)) == 1


def test_extract_refuses_a_cut_that_leaks():
    model = _norm_model("decomposed")
    sub = extract(model, {"h1a": None}, ["y"])
    assert {i.name for i in sub.graph.input} == {"h1a"}
    with pytest.raises(GraphNotSupported, match="'x' is needed"):
        extract(model, {"n0": None}, ["y", "h0"])


def _mini_kokoro(with_round: bool = True, projections: int = 2) -> onnx.ModelProto:
    """Kokoro's shape in ~30 nodes (not runnable): durations, alignment, two alignment
    MatMuls (one into an LSTM), F0/N projections, a sine-source CumSum, a depthwise pool
    and the generator's LeakyRelu -> ConvTranspose."""
    f = np.float32
    inits = [
        _init("wd", np.ones((4, 1), f)),
        _init("one", f(1)),
        _init("wf0", np.ones((1, 8, 1), f)),
        _init("wn", np.ones((1, 8, 1), f)),
        _init("wc", np.ones((1, 1, 3), f)),
        _init("wpool", np.ones((16, 1, 3), f)),
        _init("wup", np.ones((16, 8, 4), f)),
        _init("wi", np.ones((22, 1, 20), f)),
        _init("shape2", np.array([1, -1], np.int64)),
    ]
    n = helper.make_node
    nodes = [
        n("Cast", ["tokens"], ["tf"], to=TensorProto.FLOAT),
        n("MatMul", ["tf", "wd"], ["dlog"]),
        n("Div", ["dlog", "speed"], ["dsp"]),
        n("Round" if with_round else "Floor", ["dsp"], ["dr"]),
        n("Clip", ["dr", "one"], ["dur"]),
        n("CumSum", ["dur", "one"], ["dcum"]),
        n("Cast", ["dcum"], ["align"], to=TensorProto.FLOAT),
        n("Mul", ["tf", "style"], ["text"]),
        n("MatMul", ["text", "align"], ["en"]),
        n("LSTM", ["en", "wd", "wd"], ["lstm"]),
        n("MatMul", ["text", "align"], ["asr"]),
        n("Conv", ["lstm", "wf0"], ["f0p"]),
        n("Squeeze", ["f0p"], ["f0s"]),
        n("Reshape", ["f0s", "shape2"], ["F0"]),
        n("Unsqueeze", ["F0", "one"], ["f0u"]),
        n("Conv", ["f0u", "wc"], ["f0c"]),
        n("Concat", ["asr", "f0c", "Nc"], ["cat"], axis=1),
        n("ConvTranspose", ["cat", "wpool"], ["pooled"], group=16),
        n("Add", ["pooled", "cat"], ["xgen"]),
        n("LeakyRelu", ["xgen"], ["lr"]),
        n("ConvTranspose", ["lr", "wup"], ["up0"]),
        n("Resize", ["f0u", "", "one"], ["f0r"]),
        n("CumSum", ["f0r", "one"], ["phase"]),
        n("Sin", ["phase"], ["sine"]),
        n("Add", ["up0", "sine"], ["mix"]),
        n("ConvTranspose", ["mix", "wi"], ["audio"]),
    ]
    if projections == 2:
        nodes += [
            n("Conv", ["lstm", "wn"], ["np_"]),
            n("Squeeze", ["np_"], ["ns"]),
            n("Reshape", ["ns", "shape2"], ["N"]),
            n("Unsqueeze", ["N", "one"], ["nu"]),
            n("Conv", ["nu", "wc"], ["Nc"]),
        ]
    graph = helper.make_graph(
        nodes,
        "mini",
        [
            helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "n"]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, [1, 256]),
            helper.make_tensor_value_info("speed", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_cut_tensors_are_found_by_structure():
    cuts = find_cuts(_mini_kokoro())
    assert (cuts.durations, cuts.asr, cuts.f0, cuts.n) == ("dur", "asr", "F0", "N")
    assert (cuts.phase, cuts.xgen, cuts.audio) == ("phase", "xgen", "audio")


@pytest.mark.parametrize(
    "model,reason",
    [
        (_mini_kokoro(with_round=False), "Round->Clip"),
        (_mini_kokoro(projections=1), "F0/N projections"),
    ],
)
def test_unrecognised_structure_is_graph_not_supported(model, reason):
    with pytest.raises(GraphNotSupported, match=reason) as err:
        find_cuts(model)
    assert reason in err.value.reason


def test_bucket_contract_is_graph_not_supported():
    model = _mini_kokoro()
    model.graph.input.append(helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]))
    with pytest.raises(GraphNotSupported, match="classic contract"):
        find_cuts(model)


@pytest.mark.parametrize("frames", [1, 9, 10, 11, 19, 50, 151, 333, 1000])
def test_window_bounds_cover_the_segment(frames):
    bounds = window_bounds(frames, first=10, growth=2.0, max_frames=64)
    assert bounds[0][0] == 0 and bounds[-1][1] == frames
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert bounds[0][1] <= 10 or frames < 20
    assert all(hi - lo <= 64 for lo, hi in bounds)
    assert window_sizes(10, 2.0, 64) == [10, 20, 40, 64]


def test_priors_interpolate_between_anchors_and_blend():
    ch = (2, 3)
    rows = np.array([10, 20], np.int64)
    a = NormPriors(
        "a", rows, np.array([[0.0] * 5, [1.0] * 5], np.float32), np.ones((2, 5), np.float32), ch
    )
    b = NormPriors(
        "b", rows, np.full((2, 5), 3.0, np.float32), np.full((2, 5), 2.0, np.float32), ch
    )
    s = a.row_stats(15)
    assert s["norm00_mean"].shape == (1, 2, 1) and s["norm01_var"].shape == (1, 3, 1)
    np.testing.assert_allclose(s["norm01_mean"], 0.5)
    np.testing.assert_allclose(a.row_stats(0)["norm00_mean"], 0.0)  # clamped to the first anchor
    np.testing.assert_allclose(a.for_ids(600)["norm00_mean"], 1.0)  # and the last
    mix = NormPriors.blend([(a, 3.0), (b, 1.0)], "a+b")
    np.testing.assert_allclose(mix.row_stats(20)["norm00_mean"], 0.75 * 1.0 + 0.25 * 3.0)
    np.testing.assert_allclose(mix.var, 0.75 * 1.0 + 0.25 * 2.0)
    feeds = split_stats(np.arange(5, dtype=np.float32), np.ones(5, np.float32), ch)
    assert feeds["norm01_mean"].reshape(-1).tolist() == [2.0, 3.0, 4.0]


def test_priors_round_trip(tmp_path):
    p = NormPriors(
        "v", np.array([4, 9]), np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), (3,)
    )
    p.save(tmp_path / "v.npz")
    q = NormPriors.load(tmp_path / "v.npz")
    assert q.voice == "v" and q.channels == (3,) and q.rows.tolist() == [4, 9]
