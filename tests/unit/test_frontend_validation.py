"""One validation path: a request the engine refuses gets the engine's own refusal on both
front ends. For each bad request, ``Engine.prepare`` (engine/requests.py) is asked first;
the HTTP error body and the Wyoming ``error`` event must carry its message and code (HTTP:
its status and param, and OpenAI's name for the code), and each front end then still
serves. One real Engine on the tiny graph (tests/support/tiny_engine.py) behind both
listeners; ~1 s."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.engine import Engine
from fastkokoro_wyoming.engine.errors import EmptyText, EngineError
from fastkokoro_wyoming.engine.types import SynthesisRequest
from fastkokoro_wyoming.http_api.app import start_http_server
from fastkokoro_wyoming.http_api.errors import openai_code
from fastkokoro_wyoming.http_api.metrics import Metrics
from fastkokoro_wyoming.wyoming_api.service import start_wyoming_server
from tests.support.fakes import wyoming_settings
from tests.support.tiny_engine import tiny_engine

TIMEOUT = 10.0
SSML_BROKEN = "<speak>a <b></speak>"
SSML_INLINE = "<speak>Say [x](/$/).</speak>"  # an inline span in SSML text: checked too

# (the engine request, the same request as an HTTP body's changes)
CASES = {
    "unknown voice": (SynthesisRequest("Hi.", "zz_nobody"), {"voice": "zz_nobody"}),
    "unknown blend part": (
        SynthesisRequest("Hi.", "af_heart+zz_nobody"),
        {"voice": "af_heart+zz_nobody"},
    ),
    "blank text": (SynthesisRequest("   "), {"input": "   "}),
    "only symbols": (SynthesisRequest("🙂 ★ ☺"), {"input": "🙂 ★ ☺"}),
    "too long": (SynthesisRequest("a" * 4097), {"input": "a" * 4097}),
    "speed": (SynthesisRequest("Hi.", speed=9.0), {"speed": 9.0}),
    "volume": (SynthesisRequest("Hi.", volume=9.0), {"volume_multiplier": 9.0}),
    "unknown language": (SynthesisRequest("Hi.", lang="xx"), {"lang": "xx"}),
    "language mismatch": (
        SynthesisRequest("Hi.", "jf_alpha", "en-US"),
        {"voice": "jf_alpha", "lang": "en-US"},
    ),
    "inline phonemes": (SynthesisRequest("Say [x](/$/)."), {"input": "Say [x](/$/)."}),
    "malformed ssml": (
        SynthesisRequest(SSML_BROKEN, ssml=True),
        {"input": SSML_BROKEN, "ssml": True},
    ),
    "inline phonemes in ssml": (
        SynthesisRequest(SSML_INLINE, ssml=True),
        {"input": SSML_INLINE, "input_format": "ssml"},
    ),
}
# What Wyoming can say of these: a text, a voice name, a language, a text format.
WYOMING = {
    "unknown voice": Synthesize("Hi.", voice=SynthesizeVoice("zz_nobody")),
    "unknown blend part": Synthesize("Hi.", voice=SynthesizeVoice("af_heart+zz_nobody")),
    "blank text": Synthesize("   "),
    "only symbols": Synthesize("🙂 ★ ☺"),
    "too long": Synthesize("a" * 4097),
    "unknown language": Synthesize("Hi.", voice=SynthesizeVoice(language="xx")),
    "inline phonemes": Synthesize("Say [x](/$/)."),
    "malformed ssml": Synthesize(SSML_BROKEN, text_format="ssml"),
    "inline phonemes in ssml": Synthesize(SSML_INLINE, text_format="ssml"),
}


def refusal(engine: Engine, req: SynthesisRequest) -> EngineError:
    """What the engine's one validation says of ``req``."""
    with pytest.raises(EngineError) as info:
        engine.prepare(req)
    return info.value


@pytest.fixture(scope="module")
async def served() -> AsyncIterator[tuple[Engine, str, int]]:
    """One tiny engine behind both front ends (module scope: each case is one request)."""
    with tiny_engine() as engine:
        http = await start_http_server(engine, HttpConfig(host="127.0.0.1", port=0), Metrics())
        wyoming = await start_wyoming_server(engine, wyoming_settings())
        try:
            yield engine, f"http://127.0.0.1:{http.port}/v1/audio/speech", wyoming.port
        finally:
            await wyoming.stop()
            await http.stop()


async def wyoming_events(port: int, *send: Event, last: str = "audio-stop") -> list[Event]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in send:
            await client.write_event(event)
        events: list[Event] = []
        while not events or events[-1].type != last:
            event = await asyncio.wait_for(client.read_event(), TIMEOUT)
            assert event is not None, "server closed the connection"
            events.append(event)
        return events


@pytest.mark.parametrize("case", CASES)
async def test_http_answers_the_engines_refusal(served, case) -> None:
    engine, url, _ = served
    req, changes = CASES[case]
    err = refusal(engine, req)
    body = {"model": "tts-1", "input": "Hi.", "voice": "af_heart", **changes}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(TIMEOUT)) as r:
            status, got = r.status, (await r.json())["error"]
        assert (status, got["message"], got["code"]) == (
            err.status,
            err.message,
            openai_code(err.code),
        )
        assert got["param"] == err.param  # the engine names the body's field
        good = {"model": "tts-1", "input": "Hi.", "voice": "af_heart", "response_format": "pcm"}
        async with session.post(url, json=good, timeout=aiohttp.ClientTimeout(TIMEOUT)) as r:
            assert r.status == 200 and await r.read()


@pytest.mark.parametrize("case", WYOMING)
async def test_wyoming_sends_the_engines_refusal_on_both_paths(served, case) -> None:
    engine, _, port = served
    err = refusal(engine, CASES[case][0])
    request = WYOMING[case]
    events = await wyoming_events(port, request.event())
    assert [e.type for e in events] == ["error", "audio-stop"]
    got = Error.from_event(events[0])
    assert (got.text, got.code) == (err.message, err.code)
    # the streaming path: the same error, then synthesize-stopped (what HA waits for); a
    # piece with nothing to speak is skipped (a stream's "..."), and a stream that said
    # nothing at all ends with one empty_text of its own
    if isinstance(err, EmptyText):
        err = EmptyText("The text produced no audio")
    start = SynthesizeStart(voice=request.voice, text_format=request.text_format)
    stream = [start.event(), SynthesizeChunk(request.text).event(), SynthesizeStop().event()]
    events = await wyoming_events(port, *stream, last="synthesize-stopped")
    errors = [Error.from_event(e) for e in events if e.type == "error"]
    assert [(e.text, e.code) for e in errors] == [(err.message, err.code)]
    assert "audio-chunk" not in [e.type for e in events]
    events = await wyoming_events(port, Synthesize("Still fine.").event())
    assert "audio-chunk" in [e.type for e in events] and "error" not in [e.type for e in events]
