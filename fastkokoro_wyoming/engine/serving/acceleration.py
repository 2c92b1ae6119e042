"""``engine.runtime.backend``: the generator's trunk in OpenVINO, prepared while serving.

The windowed decoder always opens on ONNX Runtime. When the backend may be OpenVINO,
everything one-time (the generator cut, seconds of onnx work; a compile per window length,
1-2 s each; the check and timing against ORT, a few seconds; all cached) runs in one nice-19
child process (``ovtrunk.build_cache``; a child, not a thread, because OpenVINO's inference
threads keep the nice value of the thread that compiled), so requests keep being decoded by
ORT meanwhile and never wait for it. A thread at the daemon's own priority waits for it and
then loads the compiled blobs (~0.5 s a length; a restart with the caches in place goes
straight to this). When it is ready, the windowed backend's decoder is
replaced by one whose generator is the OpenVINO one; a segment keeps the decoder its render
started with (``Engine._start_render``), so none changes generator midway.

Whether OpenVINO is used, in one log line at startup (:func:`decide`): never on a GPU
provider or with ``onnxruntime``; ``openvino`` needs the package (else ORT, warned). In what
precision (``engine.runtime.openvino_precision``): ``auto`` is int8 where NNCF is installed
(the ``openvino-int8`` extra; :mod:`..model.windowed.ovquant` says why it pays without AMX),
its other work in bf16 where OpenVINO's CPU plugin lists ``BF16`` in its
``OPTIMIZATION_CAPABILITIES`` (AMX, AVX512_BF16) and f32 elsewhere; without NNCF, bf16 where
the CPU has it. ``auto`` never tries a float trunk in
f32 (no faster than ORT's int8 rewrite), and always needs, once compiled, a timing at least
5 % faster than the ORT generator it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model.windowed.decoder import WindowedDecoder
from .background import Progress

if TYPE_CHECKING:
    from .calibration import WindowedBackend

_LOGGER = logging.getLogger(__name__)

COMPILE_SECONDS = 2.0  # one window length, for the first estimate (1.2-1.8 s measured)
QUANTIZE_SECONDS = 30.0  # NNCF's int8 of the trunk, for the estimate (30-35 s measured)
INT8_EXTRA = "pip install 'fastkokoro-wyoming[openvino-int8]'"
CHILD_TIMEOUT_SECONDS = 900.0  # the compile process (20-40 s on 2 loaded cores)


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found: a precision to compile in, or None and why not."""

    precision: str | None  # bf16 | f32 | int8 (NNCF's trunk)
    why: str
    warn: bool = False  # an explicit setting that cannot be honoured
    hint: str | None = None  # int8: OpenVINO's precision for the rest (bf16 or f32)


def decide(
    mode: str,
    gpu: bool,
    capability: Callable[[], tuple[str | None, str]] | None = None,
    precision: str = "auto",
    nncf: Callable[[], bool] | None = None,
) -> Decision:
    """Whether to prepare the OpenVINO trunk, and in which ``precision`` (the setting;
    ``capability`` and ``nncf``: for tests; else :func:`ovtrunk.capability`, which imports
    openvino, and whether NNCF is importable)."""
    if mode == "onnxruntime":
        return Decision(None, "engine.runtime.backend: onnxruntime")
    if gpu:
        return Decision(None, "a GPU provider runs the generator", warn=mode == "openvino")
    if capability is None:
        from ..model.windowed.ovtrunk import capability as probe

        capability = probe
    try:
        cpu, why = capability()
    except Exception as err:  # noqa: BLE001 - a broken install: serve on ORT
        cpu, why = None, f"OpenVINO's CPU plugin does not start ({err})"
    if cpu is None:
        hint = "; pip install 'fastkokoro-wyoming[openvino]'" if mode == "openvino" else ""
        return Decision(None, why + hint, warn=mode == "openvino")
    if nncf is None:
        from ..model.windowed.ovquant import nncf_installed as nncf
    has_nncf = nncf()
    if precision in ("auto", "int8") and has_nncf:  # the rest as the CPU runs it best
        return Decision("int8", why, hint=cpu)
    if precision == "int8":  # asked for, but NNCF is missing: the float trunk, warned
        why = f"int8 needs NNCF ({INT8_EXTRA}); {why}"
    if precision == "bf16" and cpu != "bf16":
        why = f"bf16 asked for, but this CPU has neither AMX nor AVX512_BF16: {why}"
    if cpu != "bf16" and mode == "auto":
        return Decision(None, f"no bf16 on this CPU (neither AMX nor AVX512_BF16) and no "
                        f"NNCF for int8: {why}", warn=precision in ("int8", "bf16"))  # fmt: skip
    chosen = "f32" if precision == "f32" else cpu
    return Decision(chosen, why, warn=precision in ("int8", "bf16") and chosen != precision)


class Acceleration:
    """Prepares the OpenVINO generator for one decoder and hands the new decoder over."""

    def __init__(
        self,
        mode: str,
        decision: Decision,
        streams: int,
        threads: int,
        calibration: Callable[[], Sequence[tuple[list[int], Any]]] = lambda: (),
    ) -> None:
        self.mode = mode
        self.decision = decision
        self.streams, self.threads = streams, threads
        self.calibration = calibration  # int8: the segments NNCF calibrates on (ids, style)
        self.meta: dict[str, Any] = {}  # the check and timing (also cached on disk)

    def log_decision(self) -> None:
        """The one startup line when OpenVINO will not be tried (or not as asked)."""
        if self.decision.precision is not None:
            if self.decision.warn:
                _LOGGER.warning("Generator backend: OpenVINO %s, not as set (%s)",
                                self.decision.precision, self.decision.why)  # fmt: skip
            return
        say = _LOGGER.warning if self.decision.warn else _LOGGER.info
        say("Generator backend: ONNX Runtime (%s)", self.decision.why)

    @property
    def label(self) -> str:
        """The precision as the log says it: ``int8 (bf16 elsewhere)`` for NNCF's trunk."""
        d = self.decision
        return f"int8 ({d.hint} elsewhere)" if d.precision == "int8" else str(d.precision)

    def attach(self, backend: WindowedBackend, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: once ``backend``'s decoder is open (now, or when its background
        preparation ends), :meth:`start` for it; the new decoder replaces it on the loop,
        between segments."""
        if backend.disabled is not None:
            return

        def opened(decoder: WindowedDecoder) -> None:
            def ready(new: WindowedDecoder) -> None:
                if not loop.is_closed():
                    try:
                        loop.call_soon_threadsafe(backend.replace_decoder, decoder, new)
                    except RuntimeError:  # the loop closed meanwhile: the engine is going away
                        pass

            self.start(decoder, backend.progress, ready)

        backend.when_open(opened)

    def start(
        self,
        decoder: WindowedDecoder,
        progress: Progress,
        ready: Callable[[WindowedDecoder], None],
    ) -> None:
        """Prepare in a thread at the caller's priority whose heavy part waits on a nice-19
        child process; ``ready(new decoder)`` from that thread."""
        precision = self.decision.precision
        if precision is None:
            return
        lengths = decoder.window_lengths
        seconds = COMPILE_SECONDS * (len(lengths) + 2)
        seconds += QUANTIZE_SECONDS if precision == "int8" else 0.0
        progress.begin("openvino", "Compiling the generator for OpenVINO", 1, seconds)
        _LOGGER.info(
            "Generator backend: preparing OpenVINO (%s, %s; window lengths %s) in the "
            "background; ONNX Runtime decodes meanwhile",
            self.label,
            self.decision.why,
            lengths,
        )

        def done(new: WindowedDecoder | None, seconds: float) -> None:
            progress.end("openvino")
            if new is not None:
                _LOGGER.info(
                    "Generator backend: OpenVINO %s from the next segment on (ready in "
                    "%.1f s; %.2fx the ONNX Runtime generator's speed, log-mel %.2f dB)",
                    self.label,
                    seconds,
                    self.meta.get("speedup", float("nan")),
                    self.meta.get("mel_db", float("nan")),
                )
                ready(new)

        def failed(err: Exception) -> None:
            _LOGGER.warning("Generator backend: ONNX Runtime (OpenVINO failed: %s)", err)
            progress.end("openvino")

        def work() -> WindowedDecoder | None:
            self.build_in_child(decoder, precision)
            return self.prepare(decoder, precision)  # from the caches: loads, no compile

        in_caller_priority_thread(work, done, failed)

    def build_in_child(self, decoder: WindowedDecoder, precision: str) -> None:
        """The cut, the compile and the check in a nice-19 child process (blocking), into
        the caches :meth:`prepare` then reads (``ovtrunk.build_cache`` says why a child)."""
        from ..model.windowed.ovtrunk import cached_check

        hint = self.decision.hint
        if cached_check(decoder.graphs, decoder.window_lengths, precision, hint) is not None:
            return  # a restart: prepare() loads the blobs (or compiles, if they were lost)
        calibration = list(self.calibration()) if precision == "int8" else []
        args = (decoder.graphs, decoder.window_lengths, precision, self.streams, self.threads,
                hint, calibration)  # fmt: skip
        code = "from fastkokoro_wyoming.engine.model.windowed.ovtrunk import child_main as m; m()"
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=pickle.dumps(args),
            capture_output=True,
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode != 0:
            lines = done.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
            raise RuntimeError(f"the compile process exited {done.returncode}: {lines[-1]}")

    def _accepts(self, meta: dict[str, Any], precision: str) -> bool:
        """The check passed and (``auto``) OpenVINO is faster here; else one line why."""
        from ..model.windowed.ovtrunk import MAX_MEL_DB, MIN_SPEEDUP

        if not meta.get("passed"):
            _LOGGER.warning(
                "Generator backend: ONNX Runtime (OpenVINO's output is %.2f dB log-mel from "
                "ONNX Runtime's on the probe, bound %.1f)",
                meta.get("mel_db", float("nan")),
                MAX_MEL_DB,
            )
            return False
        speed = float(meta.get("speedup", 0.0))
        if self.mode == "auto" and speed < MIN_SPEEDUP:
            _LOGGER.info(
                "Generator backend: ONNX Runtime (OpenVINO %s is %.2fx its speed here)",
                precision,
                speed,
            )
            return False
        return True

    def prepare(self, decoder: WindowedDecoder, precision: str) -> WindowedDecoder | None:
        """Cut, compile, check and time (blocking; each step from its cache where it is
        there); the decoder to use, or None (logged). A cached check that refuses it
        refuses before anything is loaded (a restart on a CPU where it is slower)."""
        from ..model.windowed.ovtrunk import OpenVinoGenerator, cached_check, check_and_time
        from ..model.windowed.trunk import derive_trunk

        graphs = decoder.graphs
        cached = cached_check(graphs, decoder.window_lengths, precision, self.decision.hint)
        if cached is not None and not self._accepts(cached, precision):
            self.meta = cached
            return None
        trunk = derive_trunk(graphs)
        style = None
        if precision == "int8":  # the child's result; in this process for benches and tests
            from ..model.windowed.ovquant import quantize_trunk

            calibration = list(self.calibration())
            quantize_trunk(graphs, trunk, calibration)
            style = calibration[0][1] if calibration else None  # a calibrated voice reads the probe
        generator = OpenVinoGenerator(
            trunk,
            decoder.generator,
            decoder.window_lengths,
            precision,
            session_options=decoder.session_options,
            providers=decoder.providers,
            streams=self.streams,
            threads=self.threads,
            cache_dir=trunk.directory / "cache",
            hint=self.decision.hint,
        )
        self.meta = meta = check_and_time(graphs, generator, graphs.path("generator"), style)
        if not self._accepts(meta, precision):
            return None
        new: WindowedDecoder | None = None

        def reopen() -> Any:
            assert new is not None
            return generator.reload(new.open_session("generator"))

        speedups = {int(n): float(v) for n, v in meta.get("speedups", {}).items()}
        new = decoder.with_generator(generator, reopen, speedups)
        return new


def in_caller_priority_thread(
    work: Callable[[], Any],
    done: Callable[[Any, float], None],
    failed: Callable[[Exception], None],
) -> None:
    """:func:`.background.in_low_priority_thread` without the nice 19: the thread that
    loads OpenVINO's compiled blobs makes its inference threads, which requests then run
    on, so it keeps its maker's priority (the event loop's or a worker's); its heavy part
    waits on the nice-19 child."""

    def run() -> None:
        t0 = time.perf_counter()
        try:
            result = work()
        except Exception as err:  # a broken install, the child's failure, disk full
            failed(err)
            return
        done(result, time.perf_counter() - t0)

    threading.Thread(target=run, name="kokoro-openvino", daemon=True).start()
