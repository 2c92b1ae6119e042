"""Wyoming front end over real loopback TCP.

Over a real Engine on the tiny graph (tests/support/tiny_engine.py) where a test only
needs answers, so the catalog and every refusal are the engine's own; over the fake
(tests/support/fakes.py: the same validation, sine audio) where a test records requests
or makes the engine slow or fail."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from fastkokoro_wyoming import __version__
from fastkokoro_wyoming.engine.errors import SynthesisFailed
from fastkokoro_wyoming.engine.types import SAMPLE_RATE, SynthesisRequest
from fastkokoro_wyoming.wyoming_api.service import WyomingService, start_wyoming_server
from tests.support.fakes import FakeEngine, wyoming_settings
from tests.support.tiny_engine import tiny_engine

TIMEOUT = 5.0


class CancelTrackingEngine(FakeEngine):
    """Records when a synthesis is cancelled or closed early."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.cancelled = asyncio.Event()

    async def synthesize(self, req: SynthesisRequest, **_: object) -> AsyncIterator[np.ndarray]:
        try:
            async for chunk in super().synthesize(req):
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.set()
            raise


async def _serve(engine: FakeEngine, **settings: object) -> WyomingService:
    return await start_wyoming_server(engine, wyoming_settings(**settings))  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def _serve_tiny(**settings: object) -> AsyncIterator[WyomingService]:
    """The server over a real Engine on the tiny graph (both closed afterwards)."""
    with tiny_engine() as engine:
        service = await start_wyoming_server(engine, wyoming_settings(**settings))
        try:
            yield service
        finally:
            await service.stop()


def _client(service: WyomingService) -> AsyncTcpClient:
    return AsyncTcpClient("127.0.0.1", service.port, connect_timeout=TIMEOUT)


async def _read(client: AsyncTcpClient, timeout: float = TIMEOUT) -> Event:
    event = await asyncio.wait_for(client.read_event(), timeout)
    assert event is not None, "server closed the connection"
    return event


async def _read_until(client: AsyncTcpClient, last: str) -> list[Event]:
    events: list[Event] = []
    while not events or events[-1].type != last:
        events.append(await _read(client))
    return events


def _types(events: list[Event]) -> list[str]:
    return [e.type for e in events if e.type != "audio-chunk"]


async def test_describe_lists_voices_and_languages() -> None:
    async with _serve_tiny() as service:
        async with _client(service) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await _read(client))
        (program,) = info.tts
        assert program.name == "kokoro"
        assert program.installed and program.supports_synthesize_streaming
        assert program.version == __version__
        assert program.attribution.url == "https://github.com/hexgrad/kokoro"
        voices = {v.name: v for v in program.voices}
        assert set(voices) == {"af_heart", "bf_emma", "jf_alpha"}
        assert voices["af_heart"].languages == ["en-US"]
        assert voices["jf_alpha"].languages == ["ja-JP"]
        assert voices["af_heart"].description == "Heart (en-US, female)"
        assert all(v.installed for v in program.voices)


async def test_synthesize_streams_chunks_with_one_stop() -> None:
    engine = FakeEngine()
    service = await _serve(engine, samples_per_chunk=1000)
    try:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="Hello. World.").event())
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["audio-start", "audio-stop"]
            start = AudioStart.from_event(events[0])
            assert (start.rate, start.width, start.channels) == (SAMPLE_RATE, 2, 1)
            chunks = [AudioChunk.from_event(e) for e in events if e.type == "audio-chunk"]
            assert sum(c.samples for c in chunks) == 2 * SAMPLE_RATE // 4
            assert all(c.samples == 1000 for c in chunks[:-1])
            # still usable, and nothing else was queued after the stop
            await client.write_event(Describe().event())
            assert (await _read(client)).type == "info"
        assert engine.requests[0].voice == "af_heart"
    finally:
        await service.stop()


@pytest.mark.parametrize(
    ("voice", "default", "expected"),
    [
        (SynthesizeVoice(name="bf_emma", speaker="ignored"), None, "bf_emma"),
        (SynthesizeVoice(language="ja-JP"), None, "jf_alpha"),
        (None, "bf_emma", "bf_emma"),
        (None, None, "af_heart"),
    ],
)
async def test_voice_selection(
    voice: SynthesizeVoice | None, default: str | None, expected: str
) -> None:
    # the default voice is the engine's (engine.default_voice), not the front end's
    engine = FakeEngine(default_voice=default or "af_heart")
    service = await _serve(engine)
    try:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="Hi.", voice=voice).event())
            await _read_until(client, "audio-stop")
        assert engine.requests[-1].voice == expected
    finally:
        await service.stop()


async def test_streaming_audio_starts_before_text_ends() -> None:
    engine = FakeEngine(delay=0.05)
    service = await _serve(engine)
    try:
        async with _client(service) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("af_heart")).event())
            for piece in ["Hello the", "re. How a", "re you? I am f", "ine"]:
                await client.write_event(SynthesizeChunk(text=piece).event())
                await asyncio.sleep(0.02)
            # synthesize-stop not sent yet: the first sentence must already be audible
            first = [await _read(client), await _read(client)]
            assert [e.type for e in first] == ["audio-start", "audio-chunk"]
            await client.write_event(SynthesizeStop().event())
            events = first + await _read_until(client, "synthesize-stopped")
        assert _types(events) == ["audio-start", "audio-stop", "synthesize-stopped"]
        assert [r.text for r in engine.requests] == ["Hello there.", "How are you?", "I am fine"]
    finally:
        await service.stop()


async def test_compatibility_synthesize_inside_stream_is_ignored() -> None:
    engine = FakeEngine()
    service = await _serve(engine)
    try:
        async with _client(service) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="Hello there. Bye").event())
            await client.write_event(Synthesize(text="Hello there. Bye").event())
            await client.write_event(SynthesizeStop().event())
            events = await _read_until(client, "synthesize-stopped")
        assert _types(events) == ["audio-start", "audio-stop", "synthesize-stopped"]
        assert [r.text for r in engine.requests] == ["Hello there.", "Bye"]
    finally:
        await service.stop()


async def test_unknown_voice_errors_then_stops_and_server_keeps_serving() -> None:
    async with _serve_tiny() as service:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="Hi.", voice=SynthesizeVoice("nope")).event())
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["error", "audio-stop"]
            assert Error.from_event(events[0]).code == "unknown_voice"
            await client.write_event(Describe().event())  # same connection still answers
            assert (await _read(client)).type == "info"
        async with _client(service) as client:
            await client.write_event(Synthesize(text="Hi.").event())
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["audio-start", "audio-stop"]


async def test_streaming_unknown_voice_ends_with_synthesize_stopped() -> None:
    async with _serve_tiny() as service:
        async with _client(service) as client:
            await client.write_event(SynthesizeStart(voice=SynthesizeVoice("nope")).event())
            await client.write_event(SynthesizeChunk(text="Hi. There.").event())
            await client.write_event(SynthesizeStop().event())
            events = await _read_until(client, "synthesize-stopped")
        assert _types(events) == ["error", "synthesize-stopped"]
        assert Error.from_event(events[0]).code == "unknown_voice"


class BrokenEngine(FakeEngine):
    """Fails after its first chunk, with an engine error or a bug."""

    def __init__(self, exc: Exception) -> None:
        super().__init__()
        self.exc = exc

    async def synthesize(self, req: SynthesisRequest, **_: object) -> AsyncIterator[np.ndarray]:
        async for chunk in super().synthesize(req):
            yield chunk
            raise self.exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (SynthesisFailed("onnx said no"), "synthesis_failed"),
        (RuntimeError("bug"), "internal_error"),
    ],
)
async def test_failure_after_audio_start_still_ends_the_request(exc: Exception, code: str) -> None:
    service = await _serve(BrokenEngine(exc))
    try:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="Hi.").event())
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["audio-start", "error", "audio-stop"]
            assert Error.from_event(events[-2]).code == code
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="One. Two. Three.").event())
            await client.write_event(SynthesizeStop().event())
            events = await _read_until(client, "synthesize-stopped")
            assert _types(events) == ["audio-start", "error", "audio-stop", "synthesize-stopped"]
    finally:
        await service.stop()


async def test_empty_text_still_ends_both_paths() -> None:
    async with _serve_tiny() as service:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="  ").event())
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["error", "audio-stop"]
            assert Error.from_event(events[0]).code == "empty_text"
        async with _client(service) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text=" ... ").event())
            await client.write_event(SynthesizeStop().event())
            events = await _read_until(client, "synthesize-stopped")
            assert _types(events) == ["error", "synthesize-stopped"]


async def test_unknown_and_malformed_events_are_ignored() -> None:
    async with _serve_tiny() as service:
        async with _client(service) as client:
            await client.write_event(Event(type="made-up-event", data={"x": 1}))
            await client.write_event(Event(type="select-program", data={"name": "kokoro"}))
            await client.write_event(Event(type="synthesize-chunk"))  # no stream, no text
            await client.write_event(Describe().event())
            assert (await _read(client)).type == "info"
            # a bare-string voice (wyoming-bench --config allows it)
            await client.write_event(Event(type="synthesize", data={"text": "Hi.", "voice": "x"}))
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["error", "audio-stop"]


async def test_describe_answers_during_synthesis() -> None:
    service = await _serve(FakeEngine(delay=1.5))
    try:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="One.").event())
            await client.write_event(Describe().event())
            # the first chunk takes 1.5 s; info must not wait for it
            early = [(await _read(client, timeout=1.0)).type for _ in range(2)]
            assert sorted(early) == ["audio-start", "info"]
            events = await _read_until(client, "audio-stop")
            assert _types(events) == ["audio-stop"]
    finally:
        await service.stop()


async def test_client_disconnect_cancels_synthesis() -> None:
    engine = CancelTrackingEngine(delay=3.0)
    service = await _serve(engine)
    try:
        client = _client(service)
        await client.connect()
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text="One sentence here. Another one").event())
        await asyncio.wait_for(_until(lambda: bool(engine.requests)), TIMEOUT)
        await client.disconnect()
        await asyncio.wait_for(engine.cancelled.wait(), 1.0)  # well before the 3 s chunk
        assert len(engine.requests) == 1
    finally:
        await service.stop()


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def test_zeroconf_announcement_is_browsable() -> None:
    from zeroconf import ServiceStateChange
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from fastkokoro_wyoming.wyoming_api.discovery import SERVICE_TYPE

    service = await start_wyoming_server(
        FakeEngine(),
        wyoming_settings(zeroconf=True, zeroconf_name="fastkokoro-unit"),
        zeroconf_interfaces=["127.0.0.1"],
    )
    browser_zc = AsyncZeroconf(interfaces=["127.0.0.1"])
    try:
        assert service.announcer is not None, "registration failed (see log)"
        found = asyncio.Event()

        def on_change(zeroconf, service_type, name, state_change) -> None:
            if name == "fastkokoro-unit." + SERVICE_TYPE and state_change in (
                ServiceStateChange.Added,
                ServiceStateChange.Updated,
            ):
                found.set()

        browser = AsyncServiceBrowser(browser_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
        try:
            await asyncio.wait_for(found.wait(), 5.0)
        finally:
            await browser.async_cancel()
        info = AsyncServiceInfo(SERVICE_TYPE, "fastkokoro-unit." + SERVICE_TYPE)
        assert await info.async_request(browser_zc.zeroconf, 3000)
        assert info.port == service.port
        assert "127.0.0.1" in info.parsed_addresses()
    finally:
        await browser_zc.async_close()
        await service.stop()
    assert service.announcer is None


class AdmissionRecordingEngine(FakeEngine):
    """Records how each synthesis asked to be admitted."""

    def __init__(self) -> None:
        super().__init__()
        self.admissions: list[dict[str, object]] = []

    async def synthesize(self, req: SynthesisRequest, **how: object) -> AsyncIterator[np.ndarray]:
        self.admissions.append(how)
        async for chunk in super().synthesize(req):
            yield chunk


async def test_wyoming_requests_are_interactive_and_later_sentences_already_admitted() -> None:
    """HA never retries: every request is admitted as interactive, and a stream's later
    sentences continue the reply the listener already hears (never refused)."""
    engine = AdmissionRecordingEngine()
    service = await _serve(engine)
    try:
        async with _client(service) as client:
            await client.write_event(Synthesize(text="One sentence.").event())
            await _read_until(client, "audio-stop")
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="First one. Second one. ").event())
            await client.write_event(SynthesizeChunk(text="Third one.").event())
            await client.write_event(SynthesizeStop().event())
            await _read_until(client, "synthesize-stopped")
    finally:
        await service.stop()
    flags = [(how.get("interactive"), how.get("admitted", False)) for how in engine.admissions]
    assert flags == [(True, False), (True, False), (True, True), (True, True)]
    # a stream's pieces say when their audio is needed (the scheduler's deadline)
    assert all(callable(how.get("needed_at")) for how in engine.admissions[1:])


class _ClosedWriter:
    """A StreamWriter whose peer is gone."""

    def get_extra_info(self, name: str) -> object:
        return ("127.0.0.1", 5555) if name == "peername" else None

    def write(self, data: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    async def drain(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def close(self) -> None:
        pass


async def test_a_reset_connection_ends_the_handler_without_an_exception() -> None:
    """A client that resets mid-stream makes the read side raise (the transport's error
    reaches the reader): the handler ends quietly, its connection slot freed."""
    from wyoming.info import Info

    from fastkokoro_wyoming.peers import PeerLimits
    from fastkokoro_wyoming.wyoming_api.handler import WyomingHandler

    reader = asyncio.StreamReader()
    reader.set_exception(BrokenPipeError(32, "Broken pipe"))
    limits = PeerLimits("wyoming", 10, 10)
    handler = WyomingHandler(
        FakeEngine(),
        wyoming_settings(),
        Info(),
        reader,
        _ClosedWriter(),  # type: ignore[arg-type]
        limits=limits,
    )
    await asyncio.wait_for(handler.run(), TIMEOUT)  # returns, does not raise
    assert limits.total == 0
