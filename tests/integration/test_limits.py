"""Limits from the config, each refused with a clear error, and the daemon serving after.

The daemon is the real one (``daemon.start``) over a real Engine on the tiny classic
graph (real validation, voices and G2P; microsecond "inference"). A test that needs a
request to stay busy wraps the session so each model call sleeps. The helpers here are
shared with test_faults.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from wyoming.tts import Synthesize

from fastkokoro_wyoming.engine import Engine
from tests.support.daemon import wait_idle
from tests.support.tiny_daemon import (
    GOOD,
    THREE,
    TIMEOUT,
    Gate,
    HookedSession,
    assert_error_body,
    assert_serves,
    client_timeout,
    derive,
    error_of,
    load_tiny_engine,
    passing,
    serving,
    sleeping,
    streamed,
    types,
    url,
    wyoming_request,
)

pytestmark = pytest.mark.integration


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
            async with http.post(url(daemon), json=body, timeout=client_timeout()) as r:
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
            async with http.post(url(daemon), json=body, timeout=client_timeout()) as r:
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
            timeout=client_timeout(),
        )
        try:
            assert first.status == 200  # headers follow the first chunk: it is streaming now
            assert engine.active_streams == 1
            async with http.post(url(daemon), json=GOOD, timeout=client_timeout()) as second:
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
            async with http.post(url(daemon), json=big, timeout=client_timeout()) as r:
                assert r.status == 413
                assert_error_body(await r.json(), code="request_too_large")

            async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked upload
                yield b'{"input": "'
                for _ in range(64):
                    yield b"Hello. " * 16
                yield b'"}'

            headers = {"Content-Type": "application/json"}
            async with http.post(
                url(daemon), data=chunks(), headers=headers, timeout=client_timeout()
            ) as r:
                assert r.status == 413
                assert_error_body(await r.json(), code="request_too_large")
            small = {**GOOD, "input": "Fits."}
            async with http.post(url(daemon), json=small, timeout=client_timeout()) as r:
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
