"""Limits from the config, each refused with a clear error, and the daemon serving after.

The daemon is the real one (``daemon.start``) over a real Engine on the tiny classic
graph (real validation, voices and G2P; microsecond "inference"). A test that needs a
request to stay busy wraps the session so each model call sleeps. The helpers here are
shared with test_faults.py.
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
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import Config, EngineConfig, HttpConfig, ModelConfig, WyomingConfig
from fastkokoro_wyoming.daemon import Daemon, start
from fastkokoro_wyoming.engine import Engine
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from tests.support.tiny_models import build_classic_model

pytestmark = pytest.mark.integration

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
    engine.ready = True
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
        async with http.post(url(daemon), json=GOOD, timeout=_timeout()) as r:
            body = await r.read()
            assert r.status == 200, body[:300]
            assert body[:4] == b"RIFF" and len(body) > 44
    if daemon.wyoming is not None:
        events = await wyoming_request(daemon, Synthesize(text="Still fine.").event())
        assert types(events)[0] == "audio-start" and types(events)[-1] == "audio-stop"
        assert "audio-chunk" in types(events) and "error" not in types(events)


def _timeout() -> aiohttp.ClientTimeout:
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


async def wait_idle(engine: Engine, deadline: float = TIMEOUT) -> None:
    end = time.monotonic() + deadline
    while engine.active_streams or engine.scheduler.queued:
        assert time.monotonic() < end, (engine.active_streams, engine.scheduler.queued)
        await asyncio.sleep(0.02)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def tiny(kokoro_assets, tmp_path_factory) -> AsyncIterator[Engine]:
    engine = await load_tiny_engine(tmp_path_factory.mktemp("limits"), kokoro_assets[1])
    yield engine
    engine.close()


# --- input length ------------------------------------------------------------------------


async def test_max_input_chars_default_is_openais_4096(tiny) -> None:
    engine = derive(tiny)
    assert engine.cfg.limits.max_input_chars == 4096
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        words = ("word " * 1000)[:4096]
        for text, status in ((words[:4095] + ".", 200), (words + "x", 400)):
            body = {**GOOD, "input": text, "response_format": "pcm"}
            async with http.post(url(daemon), json=body, timeout=_timeout()) as r:
                if status == 200:
                    assert r.status == 200, await r.text()
                    assert len(await r.read()) > 0
                    continue
                assert r.status == 400
                error = assert_error_body(await r.json(), param="input")
                assert "4096" in error["message"] and "4097" in error["message"]
                assert error["type"] == "invalid_request_error"
        await assert_serves(daemon)


async def test_configured_max_input_chars_on_both_front_ends(tiny) -> None:
    async with serving(derive(tiny, max_input_chars=50)) as daemon:
        async with aiohttp.ClientSession() as http:
            body = {**GOOD, "input": "a" * 51}
            async with http.post(url(daemon), json=body, timeout=_timeout()) as r:
                assert r.status == 400
                assert "50" in assert_error_body(await r.json(), param="input")["message"]
        events = await wyoming_request(daemon, Synthesize(text="b " * 40).event())
        assert types(events)[-1] == "audio-stop"
        assert error_of(events)["code"] == "text_too_long"
        await assert_serves(daemon)


# --- concurrent streams ------------------------------------------------------------------


async def test_max_streams_refuses_the_second_request(tiny) -> None:
    """One stream allowed: while it runs, HTTP gets 503 + Retry-After (OpenAI's shape) and
    Wyoming an error event with code "busy" followed by the end event HA waits for."""
    gate = Gate(let_through=1)  # the first sentence plays, the rest waits for the test
    engine = derive(tiny, session=HookedSession(tiny.session, gate), max_streams=1)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        first = await http.post(
            url(daemon),
            json={**GOOD, "input": THREE, "response_format": "pcm"},
            timeout=_timeout(),
        )
        try:
            assert first.status == 200  # headers follow the first chunk: it is streaming now
            assert engine.active_streams == 1
            async with http.post(url(daemon), json=GOOD, timeout=_timeout()) as second:
                assert second.status == 503
                assert second.headers["Retry-After"] == "1"
                error = assert_error_body(await second.json(), code="busy")
                assert error["type"] == "server_error"
            events = await wyoming_request(daemon, Synthesize(text="Busy now?").event())
            assert error_of(events)["code"] == "busy"
            assert types(events)[-1] == "audio-stop" and "audio-chunk" not in types(events)
            events = await wyoming_request(daemon, *streamed("Busy now?"), end="synthesize-stopped")
            assert error_of(events)["code"] == "busy" and "audio-chunk" not in types(events)
            assert engine.active_streams == 1
            gate.open()
            assert len(await first.read()) > 0  # the first stream is unharmed
        finally:
            gate.open()
            first.release()
        await wait_idle(engine)
        await assert_serves(daemon)


# --- request body ------------------------------------------------------------------------


async def test_body_over_max_body_bytes_is_413_json(tiny) -> None:
    async with serving(derive(tiny), http={"max_body_bytes": 512}) as daemon:
        big = {**GOOD, "input": "Hello. " * 200}
        async with aiohttp.ClientSession() as http:
            async with http.post(url(daemon), json=big, timeout=_timeout()) as r:
                assert r.status == 413
                assert_error_body(await r.json(), code="request_too_large")

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
                yield b'{"input": "'
                for _ in range(64):
                    yield b"Hello. " * 16
                yield b'"}'

            headers = {"Content-Type": "application/json"}
            async with http.post(
                url(daemon), data=chunks(), headers=headers, timeout=_timeout()
            ) as r:
                assert r.status == 413
                assert_error_body(await r.json(), code="request_too_large")
            small = {**GOOD, "input": "Fits."}
            async with http.post(url(daemon), json=small, timeout=_timeout()) as r:
                assert r.status == 200
        await assert_serves(daemon)


# --- Wyoming idle connections --------------------------------------------------------------


async def test_wyoming_idle_connection_is_closed(tiny) -> None:
    async with serving(derive(tiny), wyoming={"idle_timeout_s": 1.0}) as daemon:
        assert daemon.wyoming is not None
        started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.wyoming.port)
        try:
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # EOF: closed
        finally:
            writer.close()
        assert time.monotonic() - started >= 0.9
        await assert_serves(daemon)


async def test_wyoming_quiet_client_during_synthesis_is_not_idle(tiny) -> None:
    """A synthesis longer than the idle timeout is not cut: the client is waiting, not idle."""
    session = HookedSession(tiny.session, sleeping(0.6))
    engine = derive(tiny, session=session)
    async with serving(engine, wyoming={"idle_timeout_s": 1.0}) as daemon:
        started = time.monotonic()
        events = await wyoming_request(daemon, Synthesize(text=THREE).event())
        assert time.monotonic() - started > 1.0 and session.calls >= 3
        assert "error" not in types(events) and types(events)[-1] == "audio-stop"
        session.hook = passing
        await assert_serves(daemon)
