"""``engine.runtime.backend``: the generator's trunk in OpenVINO, prepared while serving.

The windowed decoder always opens on ONNX Runtime. When the backend may be OpenVINO,
everything one-time (the generator cut, seconds of onnx work; a compile per window length,
1-2 s each; the check and timing against ORT, a few seconds, cached) runs in one nice-19
thread (:func:`.background.in_low_priority_thread`), so requests keep being decoded by ORT
meanwhile and never wait for it. When it is ready, the windowed backend's decoder is
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

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model.windowed.decoder import WindowedDecoder
from .background import Progress, in_low_priority_thread

_LOGGER = logging.getLogger(__name__)

COMPILE_SECONDS = 2.0  # one window length, for the first estimate (1.2-1.8 s measured)


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

    def start(
        self,
        decoder: WindowedDecoder,
        progress: Progress,
        ready: Callable[[WindowedDecoder], None],
    ) -> None:
        """Prepare in a nice-19 thread; ``ready(new decoder)`` from that thread."""
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

        in_low_priority_thread(lambda: self.prepare(decoder, precision), done, failed)

    def prepare(self, decoder: WindowedDecoder, precision: str) -> WindowedDecoder | None:
        """Cut, compile, check and time (blocking); the decoder to use, or None (logged)."""
        from ..model.windowed.ovtrunk import (
            MAX_MEL_DB,
            MIN_SPEEDUP,
            OpenVinoGenerator,
            check_and_time,
        )
        from ..model.windowed.trunk import derive_trunk

        graphs = decoder.graphs
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
        speed = float(meta.get("speedup", 0.0))
        if not meta.get("passed"):
            _LOGGER.warning(
                "Generator backend: ONNX Runtime (OpenVINO's output is %.2f dB log-mel from "
                "ONNX Runtime's on the probe, bound %.1f)",
                meta.get("mel_db", float("nan")),
                MAX_MEL_DB,
            )
            return None
        if self.mode == "auto" and speed < MIN_SPEEDUP:
            _LOGGER.info(
                "Generator backend: ONNX Runtime (OpenVINO %s is %.2fx its speed here)",
                precision,
                speed,
            )
            return None
        new: WindowedDecoder | None = None

        def reopen() -> Any:
            assert new is not None
            return generator.reload(new.open_session("generator"))

        new = decoder.with_generator(generator, reopen)
        return new
