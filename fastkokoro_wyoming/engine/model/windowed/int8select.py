"""Derive the int8-weight variants of the windowed graphs, check them, keep the faster.

A derivation step after :func:`.graphs.derive`: :mod:`.int8conv` rewrites ``front``,
``fr`` and ``generator`` into ``<graphs>/int8/``; the result is

* **checked** against the unmodified graphs on a fixed input (the derive-time probe
  sentence, front + fr + phase + generator with its exact statistics): the audio must have
  the same length and stay within :data:`MAX_MEL_DB` log-mel of today's (measured 0.4 dB;
  the int8 model's own floor for a 1e-6 input change is 0.6-0.9 dB, so this is a bound
  against a wrong rewrite, not bit-exactness);
* **timed** against them, one thread, interleaved, by the thread's CPU time: a graph is used
  only when its variant is at least :data:`MIN_SPEEDUP` faster. That micro-benchmark, not a
  CPU-flag list, decides, because what is fast depends on MLAS's kernels for the CPU at
  hand (int8 weights hit VNNI/AMX on x86; on ARM's dotprod uint8 x uint8 may already be
  fast and the im2col copies may not pay). Measured on a Xeon with AVX512-VNNI, AVX-VNNI
  (no AMX): generator 1.9-2.0x, fr 2.4x, front 1.3x at one thread.

Both results are cached in ``int8/meta.json`` with the machine's signature (CPU model and
flags, onnxruntime version): on another CPU or runtime the check and the timing (not the
rewrite) are redone, a few seconds once. The priors and the stats graph keep using the
unmodified graphs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import WindowedGraphs, _probe_feed, _session
from .metrics import log_mel_distance_db

_LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1
REWRITTEN = ("front", "fr", "generator")
MAX_MEL_DB = 1.5  # rewritten vs unmodified on the probe (measured 0.41)
MIN_SPEEDUP = 1.05  # variant used only when at least this much faster (noise on shared CPUs)
_BENCH_WINDOWS = (18, 48)  # generator frames timed: a first window and a mid-size one
_BENCH_REPEATS = 3
_TIME_INPUTS = ("xgen", "f0", "phase")  # the generator's time-varying inputs
_FLAG_WORDS = ("avx", "vnni", "amx", "fma", "sse4", "asimd", "dotprod", "i8mm", "sve", "bf16")


def machine_signature() -> str:
    """CPU model, the SIMD flags MLAS dispatches on, and the onnxruntime version."""
    import onnxruntime as ort

    model, flags = platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip().lower()
            if key in ("model name", "cpu part") and model == platform.machine():
                model += " " + line.split(":", 1)[1].strip()
            if key in ("flags", "features") and not flags:
                words = line.split(":", 1)[1].split()
                flags = " ".join(sorted(w for w in words if any(f in w for f in _FLAG_WORDS)))
    except OSError:
        pass
    raw = f"{model}|{flags}|onnxruntime {ort.__version__}"
    return f"{model} ({hashlib.sha256(raw.encode()).hexdigest()[:10]})"


def is_ready(graphs: WindowedGraphs, mode: str = "auto") -> bool:
    """Whether :func:`with_int8` is quick here (milliseconds: its check and timing are
    cached for this machine), or would first rewrite, check and time (seconds natively,
    minutes on a small ARM board or under emulation): then the builder prepares it in the
    background with :func:`prepare` instead of before the listeners open."""
    if mode == "off":
        return True
    try:
        meta = json.loads((graphs.directory / "int8" / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("format") == FORMAT_VERSION and meta.get("signature") == machine_signature()


def prepare(graphs: WindowedGraphs, mode: str = "auto") -> WindowedGraphs:
    """The slow part of :func:`with_int8` (rewrite, check, timing; all cached), for a
    background thread; returns ``graphs``. A failure is left for :func:`with_int8` to
    meet and log once."""
    if mode != "off":
        with contextlib.suppress(Exception):
            base = replace(graphs, rewritten=())
            meta = _load_or_build(base, base.directory / "int8")
            if meta.get("signature") != (sig := machine_signature()):
                _retime(base, base.directory / "int8", meta, sig)
    return graphs


def with_int8(graphs: WindowedGraphs, mode: str = "auto") -> WindowedGraphs:
    """``graphs`` with the int8 variants that pay on this machine (``auto``), every variant
    that passes the check (``on``), or none (``off``). Never raises: a rewrite that fails
    or does not pass the check leaves the unmodified graphs, with one log line."""
    if mode == "off":
        return graphs
    graphs = replace(graphs, rewritten=())  # checked and timed against these
    out = graphs.directory / "int8"
    try:
        meta = _load_or_build(graphs, out)
        sig = machine_signature()
        if meta.get("signature") != sig:
            meta = _retime(graphs, out, meta, sig)
    except Exception as err:  # noqa: BLE001 - an optimisation: never stop the engine for it
        _LOGGER.warning("int8 convolutions off: %s", err)
        return graphs
    if not meta.get("passed"):
        _LOGGER.warning("int8 convolutions off: %s", meta.get("reason", "check failed"))
        return graphs
    speed = meta.get("speedup", {})
    use = tuple(n for n in REWRITTEN if mode == "on" or speed.get(n, 0.0) >= MIN_SPEEDUP)
    _LOGGER.info(
        "int8 convolutions: %s (speed-up %s, log-mel %.2f dB vs unmodified)",
        ", ".join(use) or "none faster here",
        ", ".join(f"{n} {speed.get(n, 0):.2f}x" for n in REWRITTEN),
        meta.get("mel_db", float("nan")),
    )
    return replace(graphs, rewritten=use)


def _load_or_build(graphs: WindowedGraphs, out: Path) -> dict[str, Any]:
    meta_path = out / "meta.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("format") == FORMAT_VERSION:
            return meta
    import onnx

    from .int8conv import fold_adain_snake, pow_to_mul, rewrite_convs

    t0 = time.perf_counter()
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        counts: dict[str, int] = {}
        for name in REWRITTEN:
            model = onnx.load(str(graphs.path(name)))
            # the front decides the durations: keep its integer path bit-exact
            counts[name] = rewrite_convs(model, fuse_rescale=name != "front")
            if name == "generator":
                counts["adain_snake"] = fold_adain_snake(model, _TIME_INPUTS)
                counts["pow"] = pow_to_mul(model)
            onnx.save(model, str(tmp / f"{name}.onnx"))
        meta: dict[str, Any] = {"format": FORMAT_VERSION, "rewritten": counts}
        probe = _probe(graphs)
        meta.update(_check(graphs, tmp, probe))
        meta["signature"] = machine_signature()
        if meta["passed"]:
            meta.update(_time(graphs, tmp, probe))
        meta["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _LOGGER.info("int8 variants derived in %.1f s: %s", meta["seconds"], counts)
    return meta


def _retime(graphs: WindowedGraphs, out: Path, meta: dict[str, Any], sig: str) -> dict[str, Any]:
    """Another CPU or onnxruntime than the one the cache was made on (kernels, and so
    rounding and speed, differ): check and time again, a few seconds once."""
    probe = _probe(graphs)
    meta = {**meta, **_check(graphs, out, probe), "signature": sig}
    if meta["passed"]:
        meta.update(_time(graphs, out, probe))
    tmp = out / f"meta.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "meta.json")
    return meta


def _probe(graphs: WindowedGraphs, style: np.ndarray | None = None) -> dict[str, Any]:
    """The probe sentence's inputs for each graph, from the unmodified graphs (``style``: a
    voice's row; by default a random voice-like one)."""
    feed = _probe_feed(style)
    asr, f0, n, dur = _session(graphs.path("front")).run(["asr", "f0", "n", "durations"], feed)
    fr_feed = {"asr": asr, "f0": f0, "n": n, "style": feed["style"]}
    (xgen,) = _session(graphs.path("fr")).run(["xgen"], fr_feed)
    (phase,) = _session(graphs.path("phase")).run(["phase"], {"f0": f0})
    gen = {"xgen": xgen, "f0": f0, "phase": phase, "style": feed["style"]}
    stats = _session(graphs.path("stats"))
    values = stats.run(None, gen)
    gen.update({o.name: v for o, v in zip(stats.get_outputs(), values, strict=True)})
    return {"front": feed, "fr": fr_feed, "generator": gen, "durations": dur}


def _decode(paths: dict[str, Path], probe: dict[str, Any]) -> np.ndarray:
    feed = probe["front"]
    asr, f0, n, dur = _session(paths["front"]).run(["asr", "f0", "n", "durations"], feed)
    if not np.array_equal(np.rint(dur), np.rint(probe["durations"])):
        raise ValueError("the rewritten front changes the durations")
    fr_feed = {"asr": asr, "f0": f0, "n": n, "style": feed["style"]}
    (xgen,) = _session(paths["fr"]).run(["xgen"], fr_feed)
    gen = {**probe["generator"], "xgen": xgen}
    (audio,) = _session(paths["generator"]).run(["audio"], gen)
    return np.asarray(audio, np.float32).reshape(-1)


def _check(graphs: WindowedGraphs, variant: Path, probe: dict[str, Any]) -> dict[str, Any]:
    """Unmodified vs rewritten pipeline on the probe: same length, log-mel bound."""
    plain = {n: graphs.path(n) for n in REWRITTEN}
    ref = _decode(plain, probe)
    try:
        test = _decode({n: variant / f"{n}.onnx" for n in REWRITTEN}, probe)
    except Exception as err:  # noqa: BLE001 - any failure means: do not use it
        return {"passed": False, "reason": f"rewritten graphs fail to run: {err}"}
    if test.size != ref.size:
        return {"passed": False, "reason": f"{test.size} samples, unmodified {ref.size}"}
    mel = log_mel_distance_db(ref, test)
    ok = bool(np.isfinite(mel) and mel <= MAX_MEL_DB)
    reason = "" if ok else f"log-mel {mel:.2f} dB from the unmodified (bound {MAX_MEL_DB})"
    return {"passed": ok, "mel_db": round(float(mel), 3), "reason": reason}


def _time(graphs: WindowedGraphs, variant: Path, probe: dict[str, Any]) -> dict[str, Any]:
    """CPU-time speed-up per graph, one thread, interleaved, median of repeats."""
    frames = probe["generator"]["xgen"].shape[-1] // 2
    feeds: dict[str, list[dict[str, Any]]] = {
        "front": [probe["front"]],
        "fr": [probe["fr"]],
        "generator": [_window(probe["generator"], min(w, frames)) for w in _BENCH_WINDOWS],
    }
    outputs = {"front": ["durations", "asr"], "fr": ["xgen"], "generator": ["audio"]}
    speed: dict[str, float] = {}
    for name in REWRITTEN:
        a = _session(graphs.path(name), threads=1)
        b = _session(variant / f"{name}.onnx", threads=1)
        ta = tb = 0.0
        for feed in feeds[name]:
            a.run(outputs[name], feed)  # first calls plan memory: not timed
            b.run(outputs[name], feed)
            sa, sb = [], []
            for _ in range(_BENCH_REPEATS):
                sa.append(_cpu(a, outputs[name], feed))
                sb.append(_cpu(b, outputs[name], feed))
            ta, tb = ta + float(np.median(sa)), tb + float(np.median(sb))
        speed[name] = round(ta / max(tb, 1e-9), 3)
    return {"speedup": speed}


def _window(gen: dict[str, Any], frames: int) -> dict[str, Any]:
    s = 2 * frames
    out = dict(gen)
    out["xgen"] = np.ascontiguousarray(gen["xgen"][:, :, :s])
    out["f0"] = np.ascontiguousarray(gen["f0"][:, :s])
    out["phase"] = np.ascontiguousarray(gen["phase"][:, :s])
    return out


def _cpu(session: Any, outputs: list[str], feed: dict[str, Any]) -> float:
    """CPU seconds of this thread (a one-thread session runs in its caller): requests
    served meanwhile by other threads, when this runs in the background, are not counted."""
    t = time.thread_time()
    session.run(outputs, feed)
    return time.thread_time() - t
