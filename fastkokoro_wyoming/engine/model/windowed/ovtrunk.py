"""The windowed generator with its convolution trunk in OpenVINO (``engine.runtime.backend``).

:mod:`.trunk` cuts the generator into pre (sine source + STFT) / trunk / post (iSTFT);
:class:`OpenVinoGenerator` runs pre and post in ONNX Runtime (fp32) and the trunk in
OpenVINO, compiled once per window length the decoder uses (fixed shapes: with dynamic
shapes OpenVINO's elementwise fusion is off, ~1.8x slower, measured), in bf16 where the
CPU has it, or int8 as NNCF quantised it (:mod:`.ovquant`). A length that was not
compiled (a whole-segment decode for the loudness table) runs on the ONNX Runtime
generator as before. It stands in for the generator's ORT session (``run(outputs, feed,
options)``), honouring ``options.terminate`` between its three parts.

Whether it is worth it is decided the way :mod:`.int8select` decides: :func:`capability`
asks OpenVINO's CPU plugin what the CPU can do (``OPTIMIZATION_CAPABILITIES`` lists
``BF16`` on AMX and AVX512_BF16 CPUs), and :func:`check_and_time` compares it with the ORT
generator on the derive-time probe (log-mel bound, then one-thread timing); both results
are cached in ``<graphs>/openvino/meta-<signature>.json``, OpenVINO's compiled blobs in
``<graphs>/openvino/cache/``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import STEPS_PER_FRAME, WindowedGraphs, _session
from .metrics import log_mel_distance_db
from .trunk import TrunkGraphs

_LOGGER = logging.getLogger(__name__)

# OpenVINO generator vs the ORT one on the probe's windows: a check that the conversion is
# sound, not the quality bound (tests/integration/test_openvino_generator.py asserts 2.0 dB
# mean over sentences: 1.65 measured, bf16 on AVX512_BF16). The probe is one sentence, and
# most of its distance is ORT's own: the export's convolutions quantise their activations
# to uint8 at run time, the trunk runs them in float, and the dequantised generator in ORT
# fp32 is itself 2.1-2.3 dB from the uint8 one on the probe (2.1-2.4 for OpenVINO bf16).
MAX_MEL_DB = 3.0
CHECK_VERSION = 4  # in the cached check's key: 3 = int8 on a voice, 4 = speed per length
MIN_SPEEDUP = 1.05  # auto: used only when at least this much faster (as int8select)
_REPEATS = 3
_CPU_FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni")


def cpu_flags() -> list[str]:
    """The /proc/cpuinfo flags that decide OpenVINO's kernels (for the log line)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip().lower() in ("flags", "features"):
                words = set(line.split(":", 1)[1].split())
                return [f for f in _CPU_FLAGS if f in words]
    except OSError:
        pass
    return []


def capability() -> tuple[str | None, str]:
    """``(precision, why)``: ``bf16`` when OpenVINO's CPU plugin reports BF16 (AMX or
    AVX512_BF16), ``f32`` when it does not, ``None`` when openvino is not importable."""
    try:
        import openvino as ov  # pyright: ignore[reportMissingImports] - the openvino extra
    except ImportError as err:
        return None, f"the openvino package is not installed ({err.name or err})"
    caps = list(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    flags = ", ".join(cpu_flags()) or "none of " + "/".join(_CPU_FLAGS)
    why = f"OpenVINO {ov.get_version().split('-')[0]}, CPU {'/'.join(caps)}; flags {flags}"
    return ("bf16" if "BF16" in caps else "f32"), why


class OpenVinoGenerator:
    """pre (ORT) -> trunk (OpenVINO, per compiled length) -> post (ORT); thread-safe.

    ``lengths`` are window lengths in frames (context included); ``streams``: calls that
    may run at once (the scheduler's workers), ``threads`` per call."""

    def __init__(
        self,
        trunk: TrunkGraphs,
        fallback: Any,
        lengths: Sequence[int],
        precision: str,
        *,
        session_options: Any = None,
        providers: Sequence[Any] | None = None,
        streams: int = 1,
        threads: int = 1,
        cache_dir: Path | None = None,
        hint: str | None = None,
    ) -> None:
        import onnxruntime as ort
        import openvino as ov  # pyright: ignore[reportMissingImports] - the openvino extra

        self.trunk = trunk
        self.fallback = fallback  # the ORT generator session: lengths not compiled
        self.precision = precision  # bf16 | f32 | int8 (the NNCF trunk)
        self.hint = hint or precision  # OpenVINO's precision for what is not int8
        self._ort, self._opts = ort, session_options
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.pre = self._open("pre")
        self.post = self._open("post")
        core = ov.Core()
        if cache_dir is not None:
            core.set_property({"CACHE_DIR": str(cache_dir)})
        config = {
            "INFERENCE_PRECISION_HINT": self.hint,
            "NUM_STREAMS": str(max(1, streams)),
            "INFERENCE_NUM_THREADS": str(max(1, streams) * max(1, threads)),
        }
        if precision == "int8":
            from .ovquant import quantized_path

            model = core.read_model(str(quantized_path(trunk)))
        else:
            model = core.read_model(str(trunk.path("trunk")))
        self._compiled: dict[int, Any] = {}
        self._requests: dict[int, queue.SimpleQueue[Any]] = {}
        self.compile_seconds: dict[int, float] = {}
        for length in sorted(set(lengths)):
            t0 = time.perf_counter()
            shaped = model.clone()
            shaped.reshape(self._shapes(shaped, length))
            self._compiled[length] = core.compile_model(shaped, "CPU", config)
            self._requests[length] = queue.SimpleQueue()
            self.compile_seconds[length] = round(time.perf_counter() - t0, 2)

    @property
    def lengths(self) -> list[int]:
        return sorted(self._compiled)

    def _open(self, name: str) -> Any:
        return self._ort.InferenceSession(
            str(self.trunk.path(name)), sess_options=self._opts, providers=self._providers
        )

    def _shapes(self, model: Any, frames: int) -> dict[str, list[int]]:
        """Static input shapes for a window of ``frames`` (the norm inputs keep theirs)."""
        steps = STEPS_PER_FRAME * frames
        har = self._har_shape(steps)
        out: dict[str, list[int]] = {}
        for port in model.inputs:
            name = port.get_any_name()
            if name == "xgen":
                out[name] = [1, 512, steps]
            elif name == "har":
                out[name] = har
            else:
                out[name] = [d.get_length() if d.is_static else 1 for d in port.get_partial_shape()]
        return out

    def _har_shape(self, steps: int) -> list[int]:
        """The STFT's output shape for ``steps`` F0 steps, from one run of pre (cheap)."""
        f0 = np.zeros((1, steps), np.float32)
        phase = np.zeros((1, steps, 9), np.float32)
        (har,) = self.pre.run(["har"], {"f0": f0, "phase": phase})
        return [int(d) for d in har.shape]

    def unload(self) -> None:
        """Idle unload: drop the ORT parts; the compiled trunk stays (reloading it would
        cost a compile per length)."""
        self.pre = self.post = self.fallback = None

    def reload(self, fallback: Any) -> OpenVinoGenerator:
        """After :meth:`unload`: the ORT parts again, ``fallback`` the reopened generator."""
        self.pre, self.post, self.fallback = self._open("pre"), self._open("post"), fallback
        return self

    def run(self, outputs: Sequence[str], feed: dict[str, Any], options: Any = None) -> list[Any]:
        """The generator's ``audio`` for ``feed`` (the ORT session's signature)."""
        frames = int(feed["xgen"].shape[-1]) // STEPS_PER_FRAME
        compiled = self._compiled.get(frames)
        if compiled is None or self.pre is None:
            return self.fallback.run(outputs, feed, options)
        (har,) = self.pre.run(["har"], {"f0": feed["f0"], "phase": feed["phase"]}, options)
        _stop_if_terminated(options)
        inputs = {n: feed[n] for n in self.trunk.trunk_inputs if n != "har"}
        inputs["har"] = har
        pool = self._requests[frames]
        try:
            request = pool.get_nowait()
        except queue.Empty:
            request = compiled.create_infer_request()
        try:
            request.infer(inputs)
            spec = np.array(request.get_output_tensor(0).data, np.float32)
        finally:
            pool.put(request)
        _stop_if_terminated(options)
        return self.post.run(outputs, {"spec": spec}, options)


def _stop_if_terminated(options: Any) -> None:
    """What ORT raises for ``RunOptions.terminate`` (background.preemptible expects it)."""
    if options is not None and getattr(options, "terminate", False):
        raise RuntimeError("Exiting due to terminate flag being set to true")


# --------------------------------------------------------------------------- check, time


def signature_key(precision: str, hint: str | None = None) -> str:
    """A file-name-safe key for this machine, runtime versions and precision."""
    import hashlib

    import openvino as ov  # pyright: ignore[reportMissingImports] - the openvino extra

    from .int8select import machine_signature

    raw = f"{machine_signature()}|openvino {ov.get_version()}|{precision}|check {CHECK_VERSION}"
    if precision == "int8":
        from .ovquant import QUANT_VERSION

        raw += f"|hint {hint or precision}|quantised {QUANT_VERSION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _check_path(directory: Path, precision: str, hint: str | None = None) -> Path:
    return directory / f"meta-{signature_key(precision, hint)}.json"


def _read_check(path: Path, lengths: Sequence[int]) -> dict[str, Any] | None:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("lengths") == sorted(set(lengths)) else None


def cached_check(
    graphs: WindowedGraphs, lengths: Sequence[int], precision: str, hint: str | None = None
) -> dict[str, Any] | None:
    """The cached check of the cut for these lengths, if both are cached (a restart: no
    child, and a refusal refuses before anything is loaded); for int8, with its trunk."""
    from .ovquant import is_quantized
    from .trunk import FORMAT_VERSION, trunk_dir

    directory = trunk_dir(graphs)
    try:
        if json.loads((directory / "meta.json").read_text()).get("format") != FORMAT_VERSION:
            return None
    except (OSError, ValueError):
        return None
    if precision == "int8" and not is_quantized(directory):
        return None
    return _read_check(_check_path(directory, precision, hint), lengths)


def check_and_time(
    graphs: WindowedGraphs,
    generator: OpenVinoGenerator,
    reference: Path,
    style: np.ndarray | None = None,
) -> dict[str, Any]:
    """OpenVINO vs ORT's generator (``reference``: the graph today's decoder runs) on the
    probe sentence cut into each compiled length: log-mel bound, then speed-up by process
    CPU time, interleaved, median of repeats. Cached per machine signature beside the graphs.

    ``style``: a real voice's row for the probe, which the int8 trunk needs: its ranges
    were calibrated on voices, and the default random voice-like style drives activations
    past them (measured: 4.5 dB on the random style, 1.1-1.6 dB on four real voices, three
    of them not calibrated on, for 1.1 dB on sentences)."""
    path = _check_path(generator.trunk.directory, generator.precision, generator.hint)
    cached = _read_check(path, generator.lengths)
    if cached is not None:
        return cached
    from .int8select import _probe

    probe = _probe(graphs, style)["generator"]
    ort_gen = _session(reference, threads=1)
    feeds = [_window(probe, n) for n in generator.lengths]
    ref = [ort_gen.run(["audio"], f)[0].reshape(-1) for f in feeds]
    test = [generator.run(["audio"], f)[0].reshape(-1) for f in feeds]
    mel = float(log_mel_distance_db(np.concatenate(ref), np.concatenate(test)))
    meta: dict[str, Any] = {"lengths": generator.lengths, "precision": generator.precision}
    meta["hint"] = generator.hint
    meta["probe_style"] = "random" if style is None else "voice"
    meta["mel_db"] = round(mel, 3)
    meta["passed"] = bool(np.isfinite(mel) and mel <= MAX_MEL_DB)
    meta["compile_seconds"] = {str(k): v for k, v in generator.compile_seconds.items()}
    if meta["passed"]:
        ta = tb = 0.0
        meta["speedups"] = {}  # per length: the decoder widens a window only where it pays
        for length, feed in zip(generator.lengths, feeds, strict=True):
            sa, sb = [], []
            for _ in range(_REPEATS):
                sa.append(_cpu(ort_gen, feed))
                sb.append(_cpu(generator, feed))
            a, b = float(np.median(sa)), float(np.median(sb))
            meta["speedups"][str(length)] = round(a / max(b, 1e-9), 3)
            ta, tb = ta + a, tb + b
        meta["speedup"] = round(ta / max(tb, 1e-9), 3)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, path)
    return meta


def build_cache(
    graphs: WindowedGraphs,
    lengths: Sequence[int],
    precision: str,
    streams: int,
    threads: int,
    hint: str | None = None,
    calibration: Sequence[tuple[list[int], np.ndarray]] = (),
) -> dict[str, Any]:
    """Everything one-time, for a child process: the cut, for int8 NNCF's quantisation on
    ``calibration`` (:mod:`.ovquant`), OpenVINO's compiled blobs of each length (in the
    cut's ``cache/``) and the check and timing; returns the check.

    Why a child: OpenVINO makes its inference threads when it compiles, and a thread takes
    the nice value of the thread that makes it, so a compile in a nice-19 thread of the
    daemon would leave every later request's generator running at nice 19 (measured: 96 %
    of the inference CPU time in such threads). The child runs at nice 19 and exits; the
    daemon then loads the blobs (~0.5 s a length) at its own priority."""
    from .trunk import derive_trunk

    trunk = derive_trunk(graphs)
    style = None
    if precision == "int8":
        from .ovquant import quantize_trunk

        quantize_trunk(graphs, trunk, calibration)
        style = calibration[0][1] if calibration else None  # a calibrated voice reads the probe
    generator = OpenVinoGenerator(trunk, None, lengths, precision, streams=streams, hint=hint,
                                  threads=threads, cache_dir=trunk.directory / "cache")  # fmt: skip
    return check_and_time(graphs, generator, graphs.path("generator"), style)


def child_main() -> None:
    """``build_cache`` in a nice-19 child: its pickled arguments on stdin (from the daemon's
    own :func:`.serving.acceleration` call), the check as JSON on stdout."""
    import pickle
    import sys

    os.nice(19)
    parent = os.getppid()

    def orphaned() -> None:  # the daemon went away: its caches are not worth finishing
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    args = pickle.loads(sys.stdin.buffer.read())  # our parent's, over a pipe
    json.dump(build_cache(*args), sys.stdout)


def _window(gen: dict[str, Any], frames: int) -> dict[str, Any]:
    """The probe's first ``frames`` frames (zero-padded past its end, as the decoder pads)."""
    have = gen["xgen"].shape[-1]
    s = STEPS_PER_FRAME * frames
    out = dict(gen)
    pad = max(0, s - have)
    out["xgen"] = np.ascontiguousarray(np.pad(gen["xgen"][:, :, :s], ((0, 0), (0, 0), (0, pad))))
    out["f0"] = np.ascontiguousarray(np.pad(gen["f0"][:, :s], ((0, 0), (0, pad))))
    phase = np.pad(gen["phase"][:, :s], ((0, 0), (0, pad), (0, 0)), mode="edge")
    out["phase"] = np.ascontiguousarray(phase)
    return out


def _cpu(session: Any, feed: dict[str, Any]) -> float:
    t = time.process_time()
    session.run(["audio"], feed)
    return time.process_time() - t
