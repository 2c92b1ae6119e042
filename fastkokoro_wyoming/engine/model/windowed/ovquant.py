"""NNCF's int8 of the OpenVINO trunk (``engine.runtime.openvino_precision``): once, cached.

Why: on a CPU without AMX the OpenVINO trunk in bf16 is no faster than ONNX Runtime's
int8-weight generator (1.01x on the windows of 16 sentences on the 2-vCPU development
machine, AMD EPYC with AVX512_BF16 + VNNI), while the same trunk quantised by NNCF, its
other work in bf16, is 1.24x at 1.75 dB log-mel from today's windowed output and the same
DNSMOS (3.348 vs 3.356); its other work in f32, 1.11x at 0.98 dB (``bench/openvino_quality.py``;
docs/operations.md#openvino has the table, bench/results/capacity.md the end-to-end run:
1.07-1.16x the audio at 4 and 8 clients). The quantisation took 30-35 s there: it runs
once, in the nice-19 compile child (:func:`.ovtrunk.build_cache`), and its result is cached
beside the cut graphs in OpenVINO's own format, so a restart reads it without NNCF.

What is quantised (the prototype's findings, measured again by the bench): convolution
inputs only, symmetric (NNCF's ``PERFORMANCE`` preset; quantising the elementwise ops too,
or asymmetric activations, is slower); not the two ``ConvTranspose`` (6x slower in int8 than
bf16) nor the last convolution, whose output is the iSTFT's log-magnitude that ``Exp``
amplifies (int8 there alone costs ~4 dB log-mel). Calibration: the trunk's inputs on the real
windows of the norm calibration phonemes (:data:`.norm_stats.CALIBRATION_PHONEMES`) read by
a few voices, each planned with its exact statistics and cut as the decoder cuts it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import SAMPLES_PER_FRAME, STEPS_PER_FRAME, WindowedGraphs, _session
from .trunk import TrunkGraphs

_LOGGER = logging.getLogger(__name__)

QUANT_VERSION = 1  # of what is quantised and how it is calibrated: part of the cache's key
SUBDIR = "int8"
# (ids, style row): one calibration segment, read by one voice
Calibration = Sequence[tuple[list[int], np.ndarray]]


def nncf_installed() -> bool:
    """Whether NNCF can be imported (the ``openvino-int8`` extra), without importing it."""
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def quantized_path(trunk: TrunkGraphs) -> Path:
    return trunk.directory / SUBDIR / "trunk.xml"


def is_quantized(directory: Path) -> bool:
    """The int8 trunk is cached in the cut's ``directory`` (this version of the recipe)."""
    try:
        meta = json.loads((directory / SUBDIR / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == QUANT_VERSION and (directory / SUBDIR / "trunk.xml").is_file()


def quantize_trunk(graphs: WindowedGraphs, trunk: TrunkGraphs, calibration: Calibration) -> Path:
    """The int8 trunk's path: from the cache, else quantised now (blocking; seconds to
    tens of seconds: the child process's work)."""
    path = quantized_path(trunk)
    if is_quantized(trunk.directory):
        return path
    import nncf  # pyright: ignore[reportMissingImports] - the openvino-int8 extra
    import openvino as ov  # pyright: ignore[reportMissingImports] - the openvino extra

    if not calibration:
        raise ValueError("no calibration segments for the int8 trunk")
    items = calibration_items(graphs, trunk, calibration)
    nncf.set_log_level(logging.ERROR)  # else a line for every operation it leaves alone
    model = ov.Core().read_model(str(trunk.path("trunk")))
    conv = {"Convolution", "GroupConvolution"}
    ops = model.get_ordered_ops()
    others = sorted({op.get_type_name() for op in ops} - conv)  # ConvTranspose among them
    last = [op.get_friendly_name() for op in ops if op.get_type_name() in conv][-1:]
    t0 = time.perf_counter()
    quantized = nncf.quantize(
        model,
        nncf.Dataset(items),
        preset=nncf.QuantizationPreset.PERFORMANCE,
        target_device=nncf.TargetDevice.CPU,
        subset_size=len(items),
        fast_bias_correction=True,
        ignored_scope=nncf.IgnoredScope(names=last, types=others, validate=False),
    )
    seconds = time.perf_counter() - t0
    final = path.parent
    tmp = final.with_name(f"{SUBDIR}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ov.save_model(quantized, str(tmp / path.name), compress_to_fp16=False)
    meta = {"version": QUANT_VERSION, "nncf": nncf.__version__, "windows": len(items),
            "segments": len(calibration), "seconds": round(seconds, 1)}  # fmt: skip
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(final, ignore_errors=True)  # an older recipe's
    os.replace(tmp, final)
    _LOGGER.info("int8 trunk quantised in %.1f s on %d windows", seconds, len(items))
    return path


class _Recorder:
    """Stands in for the generator: keeps each window's feed, returns silence of its size
    (calibration needs the trunk's inputs, not the audio)."""

    def __init__(self) -> None:
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, outputs: Any, feed: dict[str, np.ndarray], options: Any = None) -> list[Any]:
        self.feeds.append(dict(feed))
        frames = int(feed["xgen"].shape[-1]) // STEPS_PER_FRAME
        return [np.zeros(SAMPLES_PER_FRAME * frames, np.float32)]


def calibration_items(
    graphs: WindowedGraphs, trunk: TrunkGraphs, calibration: Calibration
) -> list[dict[str, np.ndarray]]:
    """The trunk's inputs for every window of ``calibration`` (``har`` from the pre part)."""
    import onnxruntime as ort

    from .decoder import WindowedDecoder

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    decoder = WindowedDecoder(graphs, opts, ["CPUExecutionProvider"], fixed_shapes=False)
    recorder = _Recorder()
    # fixed lengths, zero-padded, as the compiled trunk runs them
    recording = decoder.with_generator(recorder, lambda: recorder)
    for ids, style in calibration:
        plan = decoder.plan(ids, style, 1.0, None)  # exact statistics: what priors estimate
        for _ in recording.decode(plan):
            pass
    pre = _session(trunk.path("pre"), threads=1)
    items = []
    for feed in recorder.feeds:
        (har,) = pre.run(["har"], {"f0": feed["f0"], "phase": feed["phase"]})
        item = {n: feed[n] for n in trunk.trunk_inputs if n != "har"}
        item["har"] = har
        items.append(item)
    return items
