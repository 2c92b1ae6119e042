"""The daemon: one asyncio loop, one engine, the Wyoming server and the HTTP API.

SIGTERM/SIGINT close both listeners at once, let streams in flight finish (bounded by each
server's own drain timeout), withdraw the zeroconf announcement and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .assets import load_engine
from .config import Config
from .engine import Engine
from .http_api.app import HttpService, start_http_server
from .http_api.metrics import Metrics
from .wyoming_api.service import WyomingService, start_wyoming_server

_LOGGER = logging.getLogger(__name__)


@dataclass
class Daemon:
    """What :func:`start` brought up; :meth:`stop` takes it down in reverse order."""

    cfg: Config
    engine: Engine
    http: HttpService | None
    wyoming: WyomingService | None
    owns_engine: bool = True  # False when the caller passed an engine in (tests share one)

    async def stop(self) -> None:
        # Both listeners close at once, then drain together: a request that arrives after
        # the signal is refused on either protocol (a balancer retries it on another
        # replica) rather than served by the replica that is leaving, and the whole stop
        # takes one drain timeout, not Wyoming's and then HTTP's.
        services = [s for s in (self.wyoming, self.http) if s is not None]
        # Wyoming's stop unregisters zeroconf first, then drains
        results = await asyncio.gather(*(s.stop() for s in services), return_exceptions=True)
        if self.owns_engine:
            await asyncio.to_thread(self.engine.close)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def ready_line(self) -> str:
        parts = []
        if self.http is not None:
            parts.append(f"OpenAI API http://{self.http.host}:{self.http.port}/v1")
        if self.wyoming is not None:
            w = self.wyoming
            zc = f" (zeroconf {w.announcer.service_name})" if w.announcer is not None else ""
            parts.append(f"Wyoming tcp://{self.cfg.wyoming.host}:{w.port}{zc}")
        voices = self.engine.voices()
        langs = sorted({v.locale for v in voices})
        return (
            f"Ready: {', '.join(parts)}; {len(voices)} voices in {len(langs)} languages "
            f"({', '.join(langs)}); provider {self.engine.provider}"
        )


async def start(cfg: Config, engine: Engine | None = None) -> Daemon:
    owns = engine is None
    engine = engine or await load_engine(cfg.engine)
    http = wyoming = None
    metrics = Metrics()  # one registry: /metrics reports both listeners
    try:
        if cfg.http.enabled:
            http = await start_http_server(engine, cfg.http, metrics)
        if cfg.wyoming.enabled:
            wyoming = await start_wyoming_server(engine, cfg.wyoming, on_cut=metrics.connection_cut)
            metrics.watch_connections(wyoming.limits)
    except BaseException:
        await Daemon(cfg, engine, http, wyoming, owns).stop()
        raise
    daemon = Daemon(cfg, engine, http, wyoming, owns)
    # the catalogs (Ready line, Wyoming info, /v1/audio/voices) leave out languages whose
    # extra is missing; say once which, and what adds them, so the gap is not a mystery
    unavailable = engine.languages.unavailable_note()
    if unavailable:
        _LOGGER.info("%s", unavailable)
    _LOGGER.info("%s", daemon.ready_line())
    return daemon


async def serve(cfg: Config, on_ready: Callable[[Daemon], None] | None = None) -> None:
    """Run until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    daemon = await start(cfg)
    if on_ready is not None:
        on_ready(daemon)
    try:
        await stop.wait()
        _LOGGER.info("Shutting down: draining streams in flight")
    finally:
        await daemon.stop()
    _LOGGER.info("Stopped")


# threads of one-time work (engine/serving: background.py, acceleration.py) that may be
# inside ONNX Runtime, onnx or OpenVINO when the daemon stops
ONE_TIME_WORK_THREADS = ("kokoro-background", "kokoro-openvino")


def run(cfg: Config) -> int:
    asyncio.run(serve(cfg))
    unfinished = [t for t in threading.enumerate() if t.name in ONE_TIME_WORK_THREADS]
    if unfinished:
        # Why not a normal exit: the interpreter's exit runs the native libraries' C++
        # destructors while such a thread is still in them, which aborts (SIGABRT,
        # "terminate called without an active exception", exit -6: seen on the arm64 image
        # under qemu, stopped in its minutes-long int8 check). Nothing is lost: that work
        # writes its caches atomically and starts again at the next start.
        _LOGGER.info("Stopped during one-time work: it resumes at the next start")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
