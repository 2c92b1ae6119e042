"""Idle unload (``engine.idle_unload_s``): give the model's memory back when nobody speaks.

On a GPU host shared with an LLM, Kokoro's sessions hold GPU memory the LLM could use;
on a small CPU host, a few hundred MB. After ``idle_unload_s`` with no model work, a
watchdog thread closes every ONNX Runtime session (the model's and the windowed
decoder's); G2P, voices and priors stay loaded. The next model job reopens them first,
in its worker thread (never on the event loop), under one lock: requests that arrive
together after an unload cause one reload, the others wait for it.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

_LOGGER = logging.getLogger(__name__)


class Reloadable(Protocol):
    """A holder of ONNX Runtime sessions that can drop and reopen them."""

    def unload(self) -> None: ...
    def reload(self) -> None: ...


class Residency:
    """Tracks use of the model, unloads it when idle and reloads it on demand."""

    def __init__(
        self,
        parts: list[Reloadable],
        idle_seconds: float,
        is_idle: Callable[[], bool],
    ) -> None:
        self.parts = parts
        self.idle_seconds = idle_seconds
        self.is_idle = is_idle  # nothing queued, running or streaming
        self.loaded = True
        self.unloads = 0
        self.reloads = 0
        self.reload_seconds = 0.0  # total, for /metrics
        self.last_used = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None

    def start(self) -> None:
        """Start the watchdog (only when ``idle_seconds`` > 0)."""
        if self.idle_seconds > 0 and self._watchdog is None:
            self._watchdog = threading.Thread(
                target=self._watch, name="kokoro-idle-unload", daemon=True
            )
            self._watchdog.start()

    def close(self) -> None:
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join(timeout=5)

    def before_job(self) -> None:
        """Called by a worker before each model job: reload if unloaded (once)."""
        self.last_used = time.monotonic()
        with self._lock:  # also orders this job after an unload that is under way
            if self.loaded:
                return
            t0 = time.perf_counter()
            for part in self.parts:
                part.reload()
            took = time.perf_counter() - t0
            self.loaded = True
            self.reloads += 1
            self.reload_seconds += took
            _LOGGER.info("Model reloaded in %.2f s after an idle unload", took)

    def after_job(self) -> None:
        self.last_used = time.monotonic()

    def unload_now(self) -> bool:
        """Unload if loaded and idle; True if it did."""
        with self._lock:
            if not self.loaded or not self.is_idle():
                return False
            for part in self.parts:
                part.unload()
            gc.collect()
            trim_heap()
            self.loaded = False
            self.unloads += 1
        _LOGGER.info("Model unloaded after %.0f s idle (engine.idle_unload_s)", self.idle_seconds)
        return True

    def _watch(self) -> None:
        tick = min(max(self.idle_seconds / 4, 0.05), 5.0)
        while not self._stop.wait(tick):
            idle_for = time.monotonic() - self.last_used
            if self.loaded and idle_for >= self.idle_seconds:
                self.unload_now()


def trim_heap() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise, and RSS would
    not drop after the sessions are closed); a no-op where there is no glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
