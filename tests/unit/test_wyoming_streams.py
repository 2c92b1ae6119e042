"""Wyoming streams with the fake engine: where text is cut (pacing.py) and how pieces
are synthesized ahead, sent in order and dropped on disconnect (stream.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
from wyoming.audio import AudioChunk
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.config import ConfigError, load_config
from fastkokoro_wyoming.engine.types import SAMPLE_RATE, SynthesisRequest
from fastkokoro_wyoming.wyoming_api.pacing import Piece, StreamText, first_clause
from fastkokoro_wyoming.wyoming_api.service import WyomingService, start_wyoming_server
from tests.support.fakes import FakeEngine, wyoming_settings

TIMEOUT = 5.0


@pytest.fixture(scope="module", autouse=True)
def _kernels() -> None:
    """Load the PCM kernels (numba: seconds on a busy machine) before any timeout runs;
    the daemon does it at startup."""
    from fastkokoro_wyoming.engine.serving.pcm import default_kernels

    default_kernels()


REPLY = "Sure, I turned on the kitchen lights, and the hallway too. Then I locked the door. Bye"


def _pieces(text: str, chunk: int, words: int = 4) -> list[Piece]:
    stream = StreamText("a", words)
    out = [p for i in range(0, len(text), chunk) for p in stream.add(text[i : i + chunk])]
    rest = stream.finish()
    return out + ([rest] if rest else [])


def test_first_clause_then_sentences_however_the_text_is_chunked() -> None:
    expected = [
        Piece("Sure, I turned on the kitchen lights,", joins_next=True),
        Piece("and the hallway too.", joins_prev=True),
        Piece("Then I locked the door."),
        Piece("Bye"),
    ]
    for chunk in (1, 3, 7):
        assert _pieces(REPLY, chunk) == expected, chunk
    # a first sentence that arrives whole is spoken whole (the engine cuts its own start)
    assert _pieces(REPLY, len(REPLY))[0] == Piece(
        "Sure, I turned on the kitchen lights, and the hallway too."
    )


def test_no_clause_cut_when_off_or_too_short() -> None:
    assert [p.text for p in _pieces(REPLY, 5, words=0)][0].startswith("Sure, I turned")
    assert _pieces(REPLY, 5, words=0)[0].text.endswith("hallway too.")
    assert _pieces("Yes, it is on. Done", 2, words=4)[0] == Piece("Yes, it is on.")


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("It costs 3,000 dollars, or so", len("It costs 3,000 dollars,")),
        ("At 12:30 we leave: all of us", len("At 12:30 we leave:")),
        ("A well-known fact here - they say", len("A well-known fact here -")),
        ("One two three four— five", len("One two three four—")),
        ("One two three four, five", len("One two three four,")),
        ("One two three, four five", None),  # too few words before the comma
        ("One two three four five,", None),  # the comma's next character decides
    ],
)
def test_first_clause_boundaries(text: str, end: int | None) -> None:
    assert first_clause(text, 4) == end


def test_a_stall_flushes_everything_written_and_the_rest_continues() -> None:
    stream = StreamText("a", 0)
    assert stream.add("Let me check the thermo") == []
    assert stream.flush() == [Piece("Let me check the thermo", joins_next=True)]
    assert stream.flush() == []
    assert stream.add("stat. It is") == [Piece("stat.", joins_prev=True)]
    assert stream.finish() == Piece("It is")


def test_stream_keys_are_validated() -> None:
    cfg = load_config(environ={"FASTKOKORO_WYOMING_STALL_TIMEOUT_S": "0.5"})
    assert cfg.wyoming.stall_timeout_s == 0.5
    with pytest.raises(ConfigError, match="wyoming.first_clause_words"):
        load_config(environ={"FASTKOKORO_WYOMING_FIRST_CLAUSE_WORDS": "-1"})
    with pytest.raises(ConfigError, match="wyoming.stall_timeout_s"):
        load_config(environ={"FASTKOKORO_WYOMING_STALL_TIMEOUT_S": "-1"})


class PieceEngine(FakeEngine):
    """Each piece's audio is three chunks at one constant level (its order), with a
    delay after each; records every start, close and deadline."""

    def __init__(self, delays: Callable[[str], float]) -> None:
        super().__init__()
        self.delays = delays
        self.started: list[str] = []
        self.closed: list[str] = []
        self.needed: dict[str, Callable[[], float]] = {}

    async def synthesize(self, prep: object, **how: object) -> AsyncIterator[np.ndarray]:
        req = prep.request  # type: ignore[attr-defined]
        assert isinstance(req, SynthesisRequest)
        needed = how.get("needed_at")
        assert callable(needed)
        self.needed[req.text] = needed  # type: ignore[assignment]
        self.started.append(req.text)
        level = len(self.started) / 10
        try:
            for _ in range(3):
                yield np.full(SAMPLE_RATE // 10, level, np.float32)
                await asyncio.sleep(self.delays(req.text))
        finally:
            self.closed.append(req.text)


async def _serve(engine: FakeEngine, **settings: object) -> WyomingService:
    return await start_wyoming_server(engine, wyoming_settings(**settings))  # type: ignore[arg-type]


async def _until(client: AsyncTcpClient, last: str) -> list[Event]:
    events: list[Event] = []
    while not events or events[-1].type != last:
        event = await asyncio.wait_for(client.read_event(), TIMEOUT)
        assert event is not None
        events.append(event)
    return events


def _levels(events: list[Event]) -> list[float]:
    pcm = b"".join(AudioChunk.from_event(e).audio for e in events if e.type == "audio-chunk")
    levels = np.round(np.frombuffer(pcm, "<i2") / 32768, 2).tolist()
    return [x for i, x in enumerate(levels) if i == 0 or x != levels[i - 1]]


async def test_pieces_synthesize_at_once_and_come_out_in_order() -> None:
    engine = PieceEngine(lambda text: 0.3 if text.startswith("One") else 0.0)
    service = await _serve(engine, first_clause_words=0, stall_timeout_s=0.0)
    try:
        async with AsyncTcpClient("127.0.0.1", service.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="One is slow. Two is quick. ").event())
            await client.write_event(SynthesizeChunk(text="Three too.").event())
            await client.write_event(SynthesizeStop().event())
            events = await _until(client, "synthesize-stopped")
    finally:
        await service.stop()
    assert engine.started == ["One is slow.", "Two is quick.", "Three too."]
    # "Two" was synthesized once "One" was audible, while "One" still rendered ...
    assert engine.closed.index("Two is quick.") < engine.closed.index("One is slow.")
    # ... and was sent after it, each piece whole, in order
    assert _levels(events) == [0.1, 0.2, 0.3]
    kinds = [e.type for e in events if e.type != "audio-chunk"]
    assert kinds == ["audio-start", "audio-stop", "synthesize-stopped"]
    # each piece is due when the audio before it has played
    one, two, three = (engine.needed[t]() for t in engine.started)
    assert one < two < three


async def test_disconnect_closes_every_piece_in_flight() -> None:
    engine = PieceEngine(lambda text: 30.0)
    service = await _serve(engine, first_clause_words=0, stall_timeout_s=0.0)
    try:
        async with AsyncTcpClient("127.0.0.1", service.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="One. Two. Three. Four").event())
            while len(engine.started) < 2:
                await asyncio.sleep(0.01)
        for _ in range(200):
            if len(engine.closed) == len(engine.started):
                break
            await asyncio.sleep(0.01)
    finally:
        await service.stop()
    assert engine.started == ["One.", "Two."]  # one ahead of the piece being sent
    assert sorted(engine.closed) == sorted(engine.started)


async def test_stall_speaks_the_buffered_text() -> None:
    engine = PieceEngine(lambda text: 0.0)
    service = await _serve(engine, stall_timeout_s=0.2)
    try:
        async with AsyncTcpClient("127.0.0.1", service.port) as client:
            await client.write_event(SynthesizeStart().event())
            await client.write_event(SynthesizeChunk(text="Let me look that up").event())
            first = await _until(client, "audio-chunk")  # nothing more was sent
            await client.write_event(SynthesizeStop().event())
            await _until(client, "synthesize-stopped")
    finally:
        await service.stop()
    assert engine.started == ["Let me look that up"]
    assert [e.type for e in first][:2] == ["audio-start", "audio-chunk"]
