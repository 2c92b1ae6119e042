"""Wyoming fuzz cases over real loopback TCP: every bad client is answered or dropped,
the server stays up and other clients are unaffected. Over a real Engine on the tiny graph
(tests/support/tiny_engine.py), but for the slow reader's flood of sentences (the fake)."""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import replace

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import async_read_event, async_write_event
from wyoming.info import Describe
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.config import WyomingConfig
from fastkokoro_wyoming.wyoming_api.service import WyomingService, start_wyoming_server
from tests.support.fakes import FakeEngine, wyoming_settings
from tests.support.tiny_engine import tiny_engine

TIMEOUT = 5.0


def settings(**changes: object) -> WyomingConfig:
    """Tight limits so each fuzz case ends fast."""
    return replace(
        wyoming_settings(
            zeroconf_name="fuzz", idle_timeout_s=1.0, max_event_bytes=65_536, drain_timeout_s=1.0
        ),
        **changes,
    )


@pytest.fixture
async def service():
    with tiny_engine() as engine:
        svc = await start_wyoming_server(engine, settings())
        yield svc
        await svc.stop()


async def raw(svc: WyomingService) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", svc.port)


async def events_until_close(reader: asyncio.StreamReader) -> list[str]:
    types: list[str] = []
    while True:
        event = await asyncio.wait_for(async_read_event(reader), TIMEOUT)
        if event is None:
            return types
        types.append(event.type)


async def assert_healthy(svc: WyomingService) -> None:
    """A well-behaved client still gets info and a full synthesis."""
    async with AsyncTcpClient("127.0.0.1", svc.port) as client:
        await client.write_event(Describe().event())
        assert (await asyncio.wait_for(client.read_event(), TIMEOUT)).type == "info"
        await client.write_event(Synthesize(text="Still fine.").event())
        seen = []
        while not seen or seen[-1] != "audio-stop":
            seen.append((await asyncio.wait_for(client.read_event(), TIMEOUT)).type)
        assert seen[0] == "audio-start" and "audio-chunk" in seen


@pytest.mark.parametrize(
    "frame",
    [
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b'{"no_type": true}\n',
        b'{"type": "synthesize", "data": "text"}\n',
        b'{"type": "synthesize", "data_length": -5}\n',
        b'{"type": "synthesize", "data_length": "12"}\n',
        b'{"type": "synthesize", "data_length": 4}\nnope',
        b"\xff\xfe\x00garbage\x00\n",
    ],
)
async def test_malformed_frames_get_an_error_then_close(service, frame):
    reader, writer = await raw(service)
    writer.write(frame)
    await writer.drain()
    assert (await events_until_close(reader)) == ["error"]
    writer.close()
    await assert_healthy(service)


async def test_huge_lengths_are_refused_without_buffering(service):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for key in ("data_length", "payload_length"):
        reader, writer = await raw(service)
        writer.write(json.dumps({"type": "synthesize", key: 10**12}).encode() + b"\n")
        writer.write(b"x" * 200_000)  # whatever follows is never accumulated
        await writer.drain()
        assert (await events_until_close(reader)) == ["error"]
        writer.close()
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024
    await assert_healthy(service)


async def test_header_line_over_the_limit(service):
    reader, writer = await raw(service)
    writer.write(b'{"type": "' + b"a" * 100_000 + b'"}\n')
    await writer.drain()
    assert (await events_until_close(reader)) == ["error"]
    await assert_healthy(service)


async def test_unknown_and_out_of_order_events_are_answered_or_ignored(service):
    async with AsyncTcpClient("127.0.0.1", service.port) as client:
        await client.write_event(SynthesizeChunk(text="orphan chunk").event())  # no start
        await client.write_event(async_event("totally-unknown", {"x": 1}))
        await client.write_event(SynthesizeStop().event())  # stop without start
        assert (await asyncio.wait_for(client.read_event(), TIMEOUT)).type == "synthesize-stopped"
        await client.write_event(SynthesizeStop().event())  # and twice
        assert (await asyncio.wait_for(client.read_event(), TIMEOUT)).type == "synthesize-stopped"
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeStart().event())  # start twice: first one ends
        await client.write_event(SynthesizeChunk(text="Hello there. ").event())
        await client.write_event(SynthesizeStop().event())
        seen = []
        while seen.count("synthesize-stopped") < 2:
            seen.append((await asyncio.wait_for(client.read_event(), TIMEOUT)).type)
        assert "audio-chunk" in seen
    await assert_healthy(service)


def async_event(event_type: str, data: dict):
    from wyoming.event import Event

    return Event(type=event_type, data=data)


async def test_half_closed_socket_mid_request(service):
    reader, writer = await raw(service)
    await async_write_event(Synthesize(text="One. Two. Three.").event(), writer)
    writer.write_eof()  # client says it will send nothing more, but still reads
    types = await events_until_close(reader)
    assert types[0] == "audio-start"
    await assert_healthy(service)


async def test_idle_connection_is_closed(service):
    reader, writer = await raw(service)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed after idle_timeout_s
    writer.close()


async def test_slow_reader_does_not_block_others():
    engine = FakeEngine()
    svc = await start_wyoming_server(engine, settings(idle_timeout_s=30))  # type: ignore[arg-type]
    try:
        reader, writer = await raw(svc)
        text = ". ".join(["A sentence"] * 400)  # far more audio than socket buffers hold
        await async_write_event(Synthesize(text=text).event(), writer)
        await asyncio.sleep(0.5)  # never read: the server's writes back up
        await assert_healthy(svc)
        writer.close()
    finally:
        await svc.stop()
