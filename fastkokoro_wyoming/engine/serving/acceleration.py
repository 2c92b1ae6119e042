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
provider or with ``onnxruntime``; ``openvino`` needs the package (else ORT, warned);
``auto`` also needs bf16 (OpenVINO's CPU plugin lists ``BF16`` in its
``OPTIMIZATION_CAPABILITIES`` on AMX and AVX512_BF16 CPUs; without it the trunk runs fp32,
no faster than ORT's int8 rewrite) and, once compiled, a timing at least 5 % faster than
the ORT generator it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..model.windowed.decoder import WindowedDecoder
from .background import Progress

if TYPE_CHECKING:
    from .calibration import WindowedBackend

_LOGGER = logging.getLogger(__name__)

COMPILE_SECONDS = 2.0  # one window length, for the first estimate (1.2-1.8 s measured)
CHILD_TIMEOUT_SECONDS = 900.0  # the compile process (20-40 s on 2 loaded cores)


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found: a precision to compile in, or None and why not."""

    precision: str | None
    why: str
    warn: bool = False  # an explicit ``openvino`` that cannot be honoured


def decide(
    mode: str, gpu: bool, capability: Callable[[], tuple[str | None, str]] | None = None
) -> Decision:
    """Whether to prepare the OpenVINO trunk (``capability``: for tests; else
    :func:`ovtrunk.capability`, which imports openvino)."""
    if mode == "onnxruntime":
        return Decision(None, "engine.runtime.backend: onnxruntime")
    if gpu:
        return Decision(None, "a GPU provider runs the generator", warn=mode == "openvino")
    if capability is None:
        from ..model.windowed.ovtrunk import capability as probe

        capability = probe
    try:
        precision, why = capability()
    except Exception as err:  # noqa: BLE001 - a broken install: serve on ORT
        precision, why = None, f"OpenVINO's CPU plugin does not start ({err})"
    if precision is None:
        hint = "; pip install 'fastkokoro-wyoming[openvino]'" if mode == "openvino" else ""
        return Decision(None, why + hint, warn=mode == "openvino")
    if precision != "bf16" and mode == "auto":
        return Decision(None, f"no bf16 on this CPU (neither AMX nor AVX512_BF16): {why}")
    return Decision(precision, why)


class Acceleration:
    """Prepares the OpenVINO generator for one decoder and hands the new decoder over."""

    def __init__(self, mode: str, decision: Decision, streams: int, threads: int) -> None:
        self.mode = mode
        self.decision = decision
        self.streams, self.threads = streams, threads
        self.meta: dict[str, Any] = {}  # the check and timing (also cached on disk)

    def log_decision(self) -> None:
        """The one startup line when OpenVINO will not be tried."""
        if self.decision.precision is not None:
            return
        say = _LOGGER.warning if self.decision.warn else _LOGGER.info
        say("Generator backend: ONNX Runtime (%s)", self.decision.why)

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
        progress.begin("openvino", "Compiling the generator for OpenVINO", 1,
                       COMPILE_SECONDS * (len(lengths) + 2))  # fmt: skip
        _LOGGER.info(
            "Generator backend: preparing OpenVINO (%s, %s; window lengths %s) in the "
            "background; ONNX Runtime decodes meanwhile",
            precision,
            self.decision.why,
            lengths,
        )

        def done(new: WindowedDecoder | None, seconds: float) -> None:
            progress.end("openvino")
            if new is not None:
                _LOGGER.info(
                    "Generator backend: OpenVINO %s from the next segment on (ready in "
                    "%.1f s; %.2fx the ONNX Runtime generator's speed, log-mel %.2f dB)",
                    precision,
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

        if cached_check(decoder.graphs, decoder.window_lengths, precision) is not None:
            return  # a restart: prepare() loads the blobs (or compiles, if they were lost)
        args = (decoder.graphs, decoder.window_lengths, precision, self.streams, self.threads)
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
        cached = cached_check(graphs, decoder.window_lengths, precision)
        if cached is not None and not self._accepts(cached, precision):
            self.meta = cached
            return None
        trunk = derive_trunk(graphs)
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
        )
        self.meta = meta = check_and_time(graphs, generator, graphs.path("generator"))
        if not self._accepts(meta, precision):
            return None
        new: WindowedDecoder | None = None

        def reopen() -> Any:
            assert new is not None
            return generator.reload(new.open_session("generator"))

        new = decoder.with_generator(generator, reopen)
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
