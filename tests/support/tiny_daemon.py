"""A daemon on a tiny classic graph: real engine code, microsecond model calls.

Used by the limits, admission, faults and connection tests: a :class:`HookedSession`
wraps the tiny session so a test can hold or slow a model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import Config, EngineConfig, HttpConfig, ModelConfig, WyomingConfig
from fastkokoro_wyoming.daemon import Daemon, start
from fastkokoro_wyoming.engine import Engine
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from tests.support.tiny_models import build_classic_model

TIMEOUT = 30.0
GOOD = {"model": "tts-1", "input": "Hello there.", "voice": "af_heart", "response_format": "wav"}
# Three sentences: three model calls, so a slowed session keeps the stream busy for a while.
THREE = "The first sentence is here. The second one follows it. And this is the third."


# --- shared helpers (test_faults.py imports these) -------------------------------------


async def load_tiny_engine(tmp: Path, voices: Path) -> Engine:
    """A real Engine on the tiny classic graph with the real voices."""
    model = build_classic_model(tmp / "tiny_classic.onnx")
    cfg = EngineConfig(model=ModelConfig(path=str(model), voices=str(voices)), warmup=False)
    return await load_engine(cfg)


class HookedSession:
    """The engine's session with ``hook(ids, style)`` run first in the worker thread (to
    sleep or raise); everything else is the real session's."""

    def __init__(self, inner: Any, hook: Callable[[list[int], np.ndarray], None]) -> None:
        self.inner = inner
        self.hook = hook
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # contract, provider, run_options, ...
        return getattr(self.inner, name)

    def run(self, ids: list[int], style: np.ndarray, *args: Any, **kwargs: Any) -> np.ndarray:
        with self._lock:
            self.calls += 1
        self.hook(ids, style)
        return self.inner.run(ids, style, *args, **kwargs)


def sleeping(seconds: float) -> Callable[[list[int], np.ndarray], None]:
    return lambda ids, style: time.sleep(seconds)


def passing(ids: list[int], style: np.ndarray) -> None:
    """The hook that does nothing."""


class Gate:
    """A hook: the first ``let_through`` model calls run, later ones wait until
    :meth:`open` (so a test, not the clock, decides how long a request stays busy)."""

    def __init__(self, let_through: int = 0) -> None:
        self.let_through = let_through
        self.calls = 0
        self._open = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, ids: list[int], style: np.ndarray) -> None:
        with self._lock:
            self.calls += 1
            wait = self.calls > self.let_through
        if wait and not self._open.wait(TIMEOUT):
            raise TimeoutError("the test never opened the gate")

    def open(self) -> None:
        self._open.set()


def derive(base: Engine, *, session: Any = None, **limits: Any) -> Engine:
    """A new Engine sharing ``base``'s loaded parts, with other limits and its own scheduler
    (the constructor does no I/O, so this costs nothing)."""
    cfg = dataclasses.replace(base.cfg, limits=dataclasses.replace(base.cfg.limits, **limits))
    engine = Engine(
        cfg,
        voices=base.voice_store,
        vocab=base.vocab,
        g2p=base.g2p,
        session=session or base.session,
        scheduler=Scheduler(base.scheduler.workers, cfg.limits.max_queue),
        languages=base.languages,
    )
    return engine


@contextlib.asynccontextmanager
async def serving(
    engine: Engine, *, http: dict | None = None, wyoming: dict | None = None
) -> AsyncIterator[Daemon]:
    """The real daemon on loopback over ``engine`` (closed afterwards)."""
    cfg = Config(
        engine=engine.cfg,
        http=HttpConfig(host="127.0.0.1", port=0, **(http or {})),
        wyoming=WyomingConfig(host="127.0.0.1", port=0, zeroconf=False, **(wyoming or {})),
    )
    daemon = await start(cfg, engine=engine)
    try:
        yield daemon
    finally:
        await daemon.stop()
        await asyncio.to_thread(engine.close)


def url(daemon: Daemon, path: str = "/v1/audio/speech") -> str:
    assert daemon.http is not None
    return f"http://127.0.0.1:{daemon.http.port}{path}"


def assert_error_body(body: Any, *, param: str | None = None, code: str | None = None) -> dict:
    """OpenAI's ``{"error": {message, type, param, code}}``; returns the inner object."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, body
    assert isinstance(error["message"], str) and error["message"], body
    assert "Traceback" not in error["message"], body
    if param is not None:
        assert error["param"] == param, body
    if code is not None:
        assert error["code"] == code, body
    return error


async def assert_serves(daemon: Daemon) -> None:
    """One good request on each front end still makes audio."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url(daemon), json=GOOD, timeout=client_timeout()) as r:
            body = await r.read()
            assert r.status == 200, body[:300]
            assert body[:4] == b"RIFF" and len(body) > 44
    if daemon.wyoming is not None:
        events = await wyoming_request(daemon, Synthesize(text="Still fine.").event())
        assert types(events)[0] == "audio-start" and types(events)[-1] == "audio-stop"
        assert "audio-chunk" in types(events) and "error" not in types(events)


def client_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=TIMEOUT)


async def wyoming_request(daemon: Daemon, *send: Event, end: str = "audio-stop") -> list[Event]:
    """Send ``send`` on a fresh connection; every event up to and including ``end``."""
    assert daemon.wyoming is not None
    async with AsyncTcpClient("127.0.0.1", daemon.wyoming.port) as client:
        for event in send:
            await client.write_event(event)
        got: list[Event] = []
        while not got or got[-1].type != end:
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None, f"connection closed after {types(got)}"
            got.append(event)
        return got


def streamed(text: str) -> list[Event]:
    return [
        SynthesizeStart().event(),
        SynthesizeChunk(text=text).event(),
        SynthesizeStop().event(),
    ]


def types(events: list[Event]) -> list[str]:
    return [e.type for e in events]


def error_of(events: list[Event]) -> dict:
    (error,) = [e.data for e in events if e.type == "error"]
    return error
