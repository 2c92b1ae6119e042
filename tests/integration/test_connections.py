"""Slow and greedy clients against the real daemon: each timeout and cap cuts the
offender (with an answer it can read, logged and counted) while others are served.

The daemon is the real one over the tiny classic graph (test_limits.py's helpers);
clients are raw sockets, because no well-behaved client library can be slow on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.tts import Synthesize

from fastkokoro_wyoming.daemon import Daemon
from fastkokoro_wyoming.engine import Engine
from tests.support.tiny_daemon import (
    GOOD,
    TIMEOUT,
    assert_serves,
    derive,
    load_tiny_engine,
    serving,
    url,
    wyoming_request,
)

pytestmark = pytest.mark.integration

BOUND = 1.0  # the timeouts under test; a cut must come well inside BOUND * SLACK
SLACK = 15.0  # a loaded 2-core machine (this is a bound on the daemon, not a speed figure)


@pytest.fixture(scope="module")
async def tiny(kokoro_assets, tmp_path_factory) -> AsyncIterator[Engine]:
    engine = await load_tiny_engine(tmp_path_factory.mktemp("connections"), kokoro_assets[1])
    yield engine
    engine.close()


async def connect(daemon: Daemon, wyoming: bool = False):
    port = daemon.wyoming.port if wyoming else daemon.http.port  # type: ignore[union-attr]
    return await asyncio.open_connection("127.0.0.1", port)


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.25) -> None:
    """Send ``data`` a byte at a time (a slowloris) until the server hangs up."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), TIMEOUT)


async def cut_off(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before closing. A client still sending when the server
    closes may get a reset instead of the 408 (the kernel drops it): that is b""."""
    try:
        return await read_to_close(reader)
    except ConnectionError:
        return b""


def assert_408(raw: bytes, setting: str) -> None:
    if raw:  # the answer, when the reset did not eat it
        status, body = status_and_body(raw)
        assert status == 408 and body["error"]["code"] == "request_timeout"
        assert setting in body["error"]["message"]


def status_and_body(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def cut_count(daemon: Daemon, protocol: str, reason: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(url(daemon, "/metrics")) as r:
        text = await r.text()
    line = f'fastkokoro_connections_cut_total{{protocol="{protocol}",reason="{reason}"}}'
    values = [float(x.split()[-1]) for x in text.splitlines() if x.startswith(line)]
    return values[0] if values else 0.0


# --- HTTP timeouts -----------------------------------------------------------------------


async def test_slow_http_headers_are_cut_while_others_are_served(tiny) -> None:
    async with serving(derive(tiny), http={"header_timeout_s": BOUND}) as daemon:
        reader, writer = await connect(daemon)
        start = time.monotonic()
        slow = asyncio.create_task(
            trickle(writer, b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 50)
        )
        await assert_serves(daemon)  # the slow client holds nothing others need
        raw = await cut_off(reader)
        took = time.monotonic() - start
        slow.cancel()
        writer.close()
        assert_408(raw, "header_timeout_s")
        assert BOUND * 0.9 <= took < BOUND * SLACK
        assert await cut_count(daemon, "http", "header_timeout") == 1


async def test_a_silent_connection_is_closed_at_the_header_timeout(tiny) -> None:
    async with serving(derive(tiny), http={"header_timeout_s": BOUND}) as daemon:
        reader, writer = await connect(daemon)
        raw = await read_to_close(reader)  # it sends nothing, so the answer arrives
        writer.close()
        assert raw and status_and_body(raw)[0] == 408


async def test_a_kept_alive_connection_is_not_cut_between_requests(tiny) -> None:
    """The head timer runs from a request's first byte, not while a connection idles
    (aiohttp's keep-alive timeout governs that)."""
    async with serving(derive(tiny), http={"header_timeout_s": BOUND}) as daemon:
        reader, writer = await connect(daemon)
        get = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        for _ in range(2):
            writer.write(get)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            assert head.startswith(b"HTTP/1.1 200"), head
            length = int(
                next(
                    h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")
                ).split(b":")[1]
            )
            await reader.readexactly(length)
            await asyncio.sleep(BOUND * 2)  # idle longer than the header timeout
        writer.close()


async def test_a_long_stream_is_not_cut_by_the_header_timeout(tiny) -> None:
    from tests.support.tiny_daemon import THREE, HookedSession, sleeping

    engine = derive(tiny, session=HookedSession(tiny.session, sleeping(BOUND)))
    async with serving(engine, http={"header_timeout_s": BOUND}) as daemon:
        async with aiohttp.ClientSession() as http:
            body = {**GOOD, "input": THREE, "response_format": "pcm"}
            async with http.post(url(daemon), json=body) as r:
                assert r.status == 200 and len(await r.read()) > 0  # took > 3 x BOUND


async def test_slow_http_body_gets_408_and_the_connection_closes(tiny) -> None:
    async with serving(derive(tiny), http={"body_timeout_s": BOUND}) as daemon:
        reader, writer = await connect(daemon)
        body = json.dumps(GOOD).encode()
        writer.write(
            b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        start = time.monotonic()
        slow = asyncio.create_task(trickle(writer, body))
        raw = await cut_off(reader)
        took = time.monotonic() - start
        slow.cancel()
        writer.close()
        assert_408(raw, "body_timeout_s")
        assert took < BOUND * SLACK
        assert await cut_count(daemon, "http", "body_timeout") == 1
        await assert_serves(daemon)


# --- HTTP caps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caps", "reason"),
    [
        ({"max_connections_per_peer": 2}, "max_connections_per_peer"),
        ({"max_connections": 2, "max_connections_per_peer": 0}, "max_connections"),
    ],
)
async def test_http_connections_over_a_cap_get_503_until_one_closes(tiny, caps, reason) -> None:
    async with serving(derive(tiny), http={"header_timeout_s": 30.0, **caps}) as daemon:
        held = [await connect(daemon) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await connect(daemon)
        raw = await read_to_close(reader)
        writer.close()
        assert raw.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in raw
        status, body = status_and_body(raw)
        assert body["error"]["code"] == "too_many_connections"
        assert str(2) in body["error"]["message"]
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http, http.get(url(daemon, "/health")) as r:
            assert r.status == 200  # room again
        assert await cut_count(daemon, "http", reason) == 1


# --- Wyoming -----------------------------------------------------------------------------


async def test_a_half_sent_wyoming_event_is_cut_at_the_read_timeout(tiny) -> None:
    wyoming = {"read_timeout_s": BOUND, "idle_timeout_s": 60.0}
    async with serving(derive(tiny), wyoming=wyoming) as daemon:
        reader, writer = await connect(daemon, wyoming=True)
        start = time.monotonic()
        frame = json.dumps({"type": "synthesize", "data": {"text": "Hello there."}}) + "\n"
        slow = asyncio.create_task(trickle(writer, frame.encode()))
        event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        took = time.monotonic() - start
        assert event is not None and event.type == "error"
        assert event.data["code"] == "read_timeout"
        assert await asyncio.wait_for(async_read_event(reader), TIMEOUT) is None  # closed
        slow.cancel()
        writer.close()
        assert BOUND * 0.9 <= took < BOUND * SLACK
        assert await cut_count(daemon, "wyoming", "read_timeout") == 1
        await assert_serves(daemon)


async def test_a_quick_wyoming_client_between_slow_pauses_is_not_cut(tiny) -> None:
    """Only an event in progress is timed: a client quiet between events (HA keeps a
    connection for describe) stays until the idle timeout."""
    wyoming = {"read_timeout_s": BOUND, "idle_timeout_s": 60.0}
    async with serving(derive(tiny), wyoming=wyoming) as daemon:
        reader, writer = await connect(daemon, wyoming=True)
        for _ in range(2):
            await async_write_event(Event(type="describe"), writer)
            info = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
            assert info is not None and info.type == "info"
            await asyncio.sleep(BOUND * 2)
        await async_write_event(Synthesize(text="Still here.").event(), writer)
        types = []
        while not types or types[-1] != "audio-stop":
            event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
            assert event is not None
            types.append(event.type)
        assert "error" not in types and "audio-chunk" in types
        writer.close()


async def test_wyoming_connections_over_the_peer_cap_get_an_error_event(tiny) -> None:
    async with serving(derive(tiny), wyoming={"max_connections_per_peer": 2}) as daemon:
        held = [await connect(daemon, wyoming=True) for _ in range(2)]
        await asyncio.sleep(0.1)
        reader, writer = await connect(daemon, wyoming=True)
        event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        assert event is not None and event.type == "error"
        assert event.data["code"] == "too_many_connections"
        assert await asyncio.wait_for(async_read_event(reader), TIMEOUT) is None
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        events = await wyoming_request(daemon, Synthesize(text="Room again.").event())
        assert events[-1].type == "audio-stop" and "error" not in [e.type for e in events]
        assert await cut_count(daemon, "wyoming", "max_connections_per_peer") == 1


async def test_a_wyoming_client_hanging_up_mid_stream_logs_no_error(tiny, caplog) -> None:
    """A client that leaves while its audio is still being written: the server's next
    write fails and the read side sees the broken pipe: a debug line, not a traceback."""
    import gc
    import logging

    from tests.support.tiny_daemon import THREE, HookedSession, sleeping

    caplog.set_level(logging.DEBUG)
    engine = derive(tiny, session=HookedSession(tiny.session, sleeping(0.2)))
    async with serving(engine) as daemon:
        for _ in range(3):
            reader, writer = await connect(daemon, wyoming=True)
            await async_write_event(Synthesize(text=THREE).event(), writer)
            while True:
                event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
                assert event is not None
                if event.type == "audio-chunk":
                    break
            await asyncio.sleep(0.3)  # more audio arrives unread: the close is a reset
            writer.close()  # gone while more sentences are on their way
            await asyncio.sleep(1.0)
        await assert_serves(daemon)
        gc.collect()  # a handler task that died with an exception nobody read says so now
        await asyncio.sleep(0.1)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
