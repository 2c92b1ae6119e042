"""Derive the windowed decoder's five graphs from a classic Kokoro ONNX model, and cache them.

Kokoro decodes a whole utterance in one call, so the first audio waits for the last. The
expensive tail of that call (the HiFi-GAN/iSTFT *generator*, ~95 % of the cost) is local in
time except for its 44 instance norms, so it can run over short windows if the norms get
their statistics from outside. That needs the model cut into:

* **front**  ``tokens, style, speed -> asr [1,512,F], f0 [1,2F], n [1,2F], durations``
* **fr**     ``asr, f0, n, style -> xgen [1,512,2F]`` (the decoder up to the generator)
* **phase**  ``f0 -> phase [1,2F,9]``: the sine source's cumulative phase, computed once per
  segment and sliced per window so the harmonic source stays continuous across joins
* **generator** ``xgen, f0, phase, style, norm{k}_mean|var -> audio [600 L]``
* **stats**  the generator with every norm's per-channel mean/variance as outputs (calibration)

Cut tensors are found by structure (the duration Round->Clip; the alignment MatMul without
an LSTM after it; the 1-channel F0/N projections; the sine generator's CumSum; the input of
the first full ConvTranspose after ``asr``); this export's tensor names are only a cross-check.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..weights import file_digest
from .errors import GraphNotSupported
from .metrics import spectral_snr_db

if TYPE_CHECKING:  # onnx is needed to derive the graphs, not to load them from the cache
    import onnx

    from .surgery import GraphIndex

_LOGGER = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 600  # audio samples per asr frame (24 kHz, 40 frames/s)
STEPS_PER_FRAME = 2  # f0 / n / xgen / phase steps per asr frame
FORMAT_VERSION = 1  # bump when the derived files change meaning (invalidates the cache)
GRAPH_NAMES = ("front", "fr", "phase", "generator", "stats")

# This export's names (kokoro-v1.0 onnx-community / kokoro-onnx): a cross-check only.
KNOWN_NAMES = {
    "asr": "/encoder/MatMul_1_output_0",
    "f0": "/encoder/Reshape_output_0",
    "n": "/encoder/Reshape_1_output_0",
    "durations": "/encoder/Clip_output_0",
    "xgen": "/decoder/decoder/decode.3/Div_4_output_0",
    "phase": "/decoder/decoder/generator/m_source/l_sin_gen/CumSum_output_0",
}

# Whole-decode check at derive time, front+fr+generator (exact statistics) vs the original.
# Measured on the int8 model: the pieces reproduce the original bit-exactly (ORT runs the
# same kernels on the same values), so anything below 60 dB means a wrong cut. The int8
# model's own noise floor (1e-6 input change) is 23-25 dB; 40 dB leaves room for providers
# or builds whose fusions differ between the pieces and the whole graph.
VERIFY_MIN_SNR_DB = 40.0

_SHAPE_OPS = {"Squeeze", "Reshape", "Identity", "Flatten"}  # to [1, 2F]: not Unsqueeze
_LSTM_OPS = {"LSTM", "DynamicQuantizeLSTM", "GRU"}
# A plausible English sentence's phoneme ids (with pads) for the derive-time check.
_PROBE_IDS = [0, 50, 83, 54, 156, 57, 135, 16, 65, 156, 87, 158, 54, 46, 16, 48, 156, 86, 61]
_PROBE_IDS += [102, 56, 16, 62, 156, 43, 102, 54, 83, 156, 76, 158, 123, 4, 0]


@dataclass(frozen=True)
class Cuts:
    """The tensors the model is cut at, by their names in the source graph."""

    tokens: str
    style: str
    speed: str
    audio: str
    asr: str
    f0: str
    n: str
    durations: str
    xgen: str
    phase: str


@dataclass(frozen=True)
class WindowedGraphs:
    """The derived graphs on disk and what a decoder needs to know about them."""

    directory: Path
    model_digest: str
    channels: tuple[int, ...]  # per generator norm, in input order norm00, norm01, ...
    cuts: Cuts
    verify: dict[str, float]  # derive-time check: snr_db, max_abs, frames, seconds
    rewritten: tuple[str, ...] = ()  # loaded from directory/int8/ (int8select.py) instead

    def path(self, name: str) -> Path:
        return self.directory / ("int8" if name in self.rewritten else "") / f"{name}.onnx"

    @property
    def norm_count(self) -> int:
        return len(self.channels)


def _first(nodes: list[Any], what: str) -> Any:
    if len(nodes) != 1:
        raise GraphNotSupported(f"expected exactly one {what}, found {len(nodes)}")
    return nodes[0]


def find_cuts(model: onnx.ModelProto) -> Cuts:
    """Locate the cut tensors by graph structure; raise GraphNotSupported if unrecognised."""
    from .surgery import GraphIndex

    g = model.graph
    idx = GraphIndex(g)
    names = [i.name for i in g.input]
    tokens = next((n for n in ("tokens", "input_ids") if n in names), None)
    style = next((n for n in ("style", "ref_s") if n in names), None)
    if tokens is None or style is None or "speed" not in names or "input_lengths" in names:
        raise GraphNotSupported(f"not the classic contract (inputs {names})")
    audio = g.output[0].name

    # durations: Round -> Clip(min 1) of the predicted per-token lengths
    clip = _first(
        [
            n
            for n in idx.nodes
            if n.op_type == "Clip"
            and n.input[0] in idx.producer
            and idx.producer[n.input[0]].op_type == "Round"
        ],
        "Round->Clip (durations)",
    )
    durations = clip.output[0]
    after_dur = idx.descendants([durations])

    # the two alignment MatMuls (text features x alignment matrix): one input is built from
    # the durations alone (not after any LSTM that follows them), the other is not built
    # from them; asr is the one whose result feeds no LSTM (the other feeds the prosody
    # predictor's shared LSTM)
    lstm_after_dur = [n.output[0] for n in idx.nodes if n.op_type in _LSTM_OPS]
    after_lstm = idx.descendants([o for o in lstm_after_dur if o in after_dur])
    alignment = after_dur - after_lstm
    aligned = [
        n
        for n in idx.nodes
        if n.op_type == "MatMul"
        and not any(i in idx.initializers or idx.const(i) is not None for i in n.input)
        and ((n.input[0] in alignment) != (n.input[1] in alignment))
        and not (n.input[0] in after_dur and n.input[1] in after_dur)
    ]
    asr_nodes = [
        n
        for n in aligned
        if not any(
            c.op_type in _LSTM_OPS
            for t in idx.descendants([n.output[0]])
            for c in idx.consumers.get(t, ())
        )
    ]
    asr = _first(asr_nodes, "alignment MatMul not followed by an LSTM (asr)").output[0]
    after_asr = idx.descendants([asr])
    before_asr = idx.ancestors([asr])

    # the sine generator's phase: the CumSum on floats that is followed by a Sin
    phase_nodes = [
        n
        for n in idx.nodes
        if n.op_type == "CumSum"
        and n.output[0] not in after_asr
        and any(
            c.op_type == "Sin"
            for t in idx.descendants([n.output[0]])
            for c in idx.consumers.get(t, ())
        )
        and n.output[0] not in before_asr
    ]
    phase_cumsum = _first(phase_nodes, "CumSum feeding a Sin (sine source phase)")
    phase = phase_cumsum.output[0]

    # F0 / N: a 1-output-channel, kernel-1 projection conv, then shape-only ops
    projections = []
    for n in idx.nodes:
        if n.op_type not in ("Conv", "ConvInteger") or n.output[0] in after_asr:
            continue
        w = idx.const(n.input[1])
        if w is not None and w.ndim == 3 and w.shape[0] == 1 and w.shape[1] > 1 and w.shape[2] == 1:
            projections.append(_through_shape_ops(idx, _rescaled(idx, n.output[0])))
    if len(projections) != 2:
        raise GraphNotSupported(f"expected 2 F0/N projections, found {len(projections)}")
    before_phase = idx.ancestors([phase])
    f0s = [p for p in projections if p in before_phase]
    f0 = _first(f0s, "projection feeding the sine source (F0)")
    n_out = next(p for p in projections if p != f0)

    # xgen: the input of the LeakyRelu that feeds the first full (group 1) ConvTranspose
    # after asr which is not part of the iSTFT (that one comes after the phase)
    after_phase = idx.descendants([phase])
    ups = [
        n
        for n in idx.nodes
        if n.op_type == "ConvTranspose"
        and n.output[0] in after_asr
        and n.output[0] not in after_phase
        and next((a.i for a in n.attribute if a.name == "group"), 1) == 1
    ]
    if not ups:
        raise GraphNotSupported("no upsampling ConvTranspose in the generator")
    relu = idx.producer.get(ups[0].input[0])
    if relu is None or relu.op_type != "LeakyRelu":
        raise GraphNotSupported("the generator's first upsampling is not after a LeakyRelu")
    xgen = relu.input[0]

    cuts = Cuts(tokens, style, "speed", audio, asr, f0, n_out, durations, xgen, phase)
    for key, known in KNOWN_NAMES.items():
        if known in idx.producer and getattr(cuts, key) != known:
            raise GraphNotSupported(
                f"structural {key} cut {getattr(cuts, key)!r} disagrees with this export's "
                f"{known!r}"
            )
    return cuts


def _rescaled(idx: GraphIndex, name: str) -> str:
    """Past an int8 conv's Cast/Mul rescale, to the float output (float convs: itself)."""
    node = idx.producer[name]
    if node.op_type != "ConvInteger":
        return name
    t = name
    for _ in range(4):
        cons = idx.consumers.get(t, [])
        if len(cons) != 1 or cons[0].op_type not in ("Add", "Cast", "Mul"):
            break
        t = cons[0].output[0]
        if cons[0].op_type == "Mul":
            return t
    raise GraphNotSupported(f"cannot follow the int8 rescale after {node.name}")


def _through_shape_ops(idx: GraphIndex, name: str) -> str:
    t = name
    while True:
        cons = idx.consumers.get(t, [])
        if len(cons) == 1 and cons[0].op_type in _SHAPE_OPS:
            t = cons[0].output[0]
        else:
            return t


def build(model: onnx.ModelProto, cuts: Cuts) -> dict[str, onnx.ModelProto]:
    """The five graphs (generator's norm inputs without channel counts yet)."""
    import onnx

    from .surgery import extract, find_norms, rename, with_stats_outputs

    c = cuts
    style_in = {c.style: next(i for i in model.graph.input if i.name == c.style)}
    front = extract(model, {}, [c.asr, c.f0, c.n, c.durations], [c.tokens, c.style, c.speed])
    rename(front, {c.asr: "asr", c.f0: "f0", c.n: "n", c.durations: "durations"})
    fr = extract(model, {c.asr: None, c.f0: None, c.n: None, **style_in}, [c.xgen])
    rename(fr, {c.asr: "asr", c.f0: "f0", c.n: "n", c.xgen: "xgen", c.style: "style"})
    phase = extract(model, {c.f0: None}, [c.phase])
    rename(phase, {c.f0: "f0", c.phase: "phase"})
    gen_inputs = {c.xgen: None, c.f0: None, c.phase: None, **style_in}
    generator = extract(model, gen_inputs, [c.audio])
    rename(generator, {c.xgen: "xgen", c.f0: "f0", c.phase: "phase", c.style: "style"})
    rename(generator, {c.audio: "audio"})
    stats = onnx.ModelProto()
    stats.CopyFrom(generator)
    sites = find_norms(generator)
    if not sites:
        raise GraphNotSupported("no instance norms over time found in the generator")
    with_stats_outputs(stats, sites)
    return {"front": front, "fr": fr, "phase": phase, "generator": generator, "stats": stats}


def derive(
    model_path: Path,
    cache_dir: Path,
    *,
    verify: bool = True,
    probe_style: np.ndarray | None = None,
) -> WindowedGraphs:
    """The windowed graphs of ``model_path``, from ``cache_dir`` or derived now (seconds).

    Layout: ``cache_dir/windowed/<model stem>-<sha256[:16]>/{front,fr,phase,generator,
    stats}.onnx`` plus ``meta.json`` (cut names, norm channels, the check's numbers). A
    half-written directory is never visible: it is written under a temporary name and
    renamed. With ``verify`` the pieces are checked against the original model once, at
    derive time (about 1-2 s): GraphNotSupported if they do not reproduce it.
    """
    model_path = Path(model_path)
    digest = file_digest(model_path)
    out = Path(cache_dir) / "windowed" / f"{model_path.stem}-{digest}"
    meta_path = out / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT_VERSION:
            return _from_meta(out, meta)
    try:
        import onnx

        from .surgery import find_norms, with_stats_inputs
    except ImportError as err:
        raise GraphNotSupported(
            "deriving the windowed graphs needs the 'onnx' package (pip install onnx)"
        ) from err
    t0 = time.perf_counter()
    model = onnx.load(str(model_path))
    cuts = find_cuts(model)
    graphs = build(model, cuts)
    del model
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name in ("front", "fr", "phase", "stats"):
            onnx.save(graphs[name], str(tmp / f"{name}.onnx"))
        channels = _channels(tmp, probe_style)
        gen = graphs["generator"]
        with_stats_inputs(gen, find_norms(gen), channels)
        onnx.save(gen, str(tmp / "generator.onnx"))
        check = _verify(model_path, tmp, probe_style) if verify else {}
        check["seconds"] = round(time.perf_counter() - t0, 2)
        meta = {
            "format": FORMAT_VERSION,
            "source": model_path.name,
            "digest": digest,
            "channels": channels,
            "cuts": asdict(cuts),
            "verify": check,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if out.exists():
            shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _LOGGER.info(
        "Windowed graphs of %s derived in %.1f s: %s", model_path.name, check["seconds"], out
    )
    return _from_meta(out, meta)


def _from_meta(out: Path, meta: dict[str, Any]) -> WindowedGraphs:
    return WindowedGraphs(
        out, meta["digest"], tuple(meta["channels"]), Cuts(**meta["cuts"]), meta["verify"]
    )


def _session(path: Path, threads: int = 2) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _probe_feed(probe_style: np.ndarray | None) -> dict[str, np.ndarray]:
    if probe_style is None:  # a voice-like style: a voice table row has std ~0.15
        probe_style = np.random.default_rng(7).normal(0, 0.15, (1, 256))
    return {
        "tokens": np.asarray([_PROBE_IDS], np.int64),
        "style": np.asarray(probe_style, np.float32).reshape(1, 256),
        "speed": np.ones(1, np.float32),
    }


def _channels(directory: Path, probe_style: np.ndarray | None) -> list[int]:
    """Per-norm channel counts, read off one short stats run (no shape inference needed)."""
    feed = _probe_feed(probe_style)
    front = _session(directory / "front.onnx")
    asr, f0, n = front.run(["asr", "f0", "n"], feed)
    (xgen,) = _session(directory / "fr.onnx").run(
        ["xgen"], {"asr": asr, "f0": f0, "n": n, "style": feed["style"]}
    )
    (phase,) = _session(directory / "phase.onnx").run(["phase"], {"f0": f0})
    stats = _session(directory / "stats.onnx")
    outs = stats.run(None, {"xgen": xgen, "f0": f0, "phase": phase, "style": feed["style"]})
    return [int(o.shape[1]) for o in outs[::2]]


def _verify(model_path: Path, directory: Path, probe_style: np.ndarray | None) -> dict[str, Any]:
    """front + fr + phase + generator (statistics from the stats graph, one window) against
    the original model on the probe sentence."""
    feed = _probe_feed(probe_style)
    (ref,) = _session(model_path).run(None, feed)
    ref = np.asarray(ref, np.float32).reshape(-1)
    asr, f0, n, dur = _session(directory / "front.onnx").run(["asr", "f0", "n", "durations"], feed)
    style = feed["style"]
    (xgen,) = _session(directory / "fr.onnx").run(
        ["xgen"], {"asr": asr, "f0": f0, "n": n, "style": style}
    )
    (phase,) = _session(directory / "phase.onnx").run(["phase"], {"f0": f0})
    gen_feed = {"xgen": xgen, "f0": f0, "phase": phase, "style": style}
    stats = _session(directory / "stats.onnx")
    values = stats.run(None, gen_feed)
    gen_feed.update({o.name: v for o, v in zip(stats.get_outputs(), values, strict=True)})
    (audio,) = _session(directory / "generator.onnx").run(["audio"], gen_feed)
    audio = np.asarray(audio, np.float32).reshape(-1)
    frames = int(round(float(np.sum(dur))))
    if asr.shape[-1] != frames or audio.size != SAMPLES_PER_FRAME * frames:
        raise GraphNotSupported(
            f"frame bookkeeping: durations sum {frames}, asr {asr.shape[-1]} frames, "
            f"audio {audio.size} samples (expected {SAMPLES_PER_FRAME} per frame)"
        )
    if audio.size != ref.size:
        raise GraphNotSupported(f"pieces give {audio.size} samples, the model {ref.size}")
    snr = spectral_snr_db(ref, audio)
    max_abs = float(np.max(np.abs(ref - audio)))
    if snr < VERIFY_MIN_SNR_DB and max_abs > 0:
        raise GraphNotSupported(
            f"the cut graphs do not reproduce the model: spectral SNR {snr:.1f} dB "
            f"(need >= {VERIFY_MIN_SNR_DB} dB), max abs diff {max_abs:.3g}"
        )
    return {"snr_db": round(min(snr, 200.0), 1), "max_abs": max_abs, "frames": frames}
