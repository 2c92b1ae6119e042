"""Wyoming streams on the real model that do not wait: the next sentence is synthesized
while the one before it plays, the first words start at a clause, a stalled LLM's text is
spoken, and a client that leaves takes all its queued work with it.

Nothing here asserts timing: the order of engine calls and scheduler deadlines shows that
the work overlaps; pocketsphinx shows the joined audio says the text (no clipped word).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable

import pytest
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.wyoming_api.service import WyomingService, start_wyoming_server
from tests.support.daemon import (
    TIMEOUT,
    assert_says,
    read_event,
    read_until,
    types_of,
    wait_idle,
    wyoming_audio,
)

pytestmark = pytest.mark.integration

THREE = (
    "The museum opens at nine in the morning and closes at six in the evening. "
    "Visitors can buy tickets at the entrance or on the website. "
    "Guided tours leave from the main hall every hour."
)
CLAUSE = (
    "I turned off the lights in the kitchen and the hallway, and I locked the front door "
    "for the night."
)


class CallLog:
    """Wraps ``engine.synthesize``: the order in which each piece's synthesis started
    (its first model call is queued then) and finished, and the deadlines it was given."""

    def __init__(self, engine: object) -> None:
        self.engine = engine
        self.inner = engine.synthesize  # type: ignore[attr-defined]
        self.events: list[tuple[str, str]] = []
        self.needed: dict[str, Callable[[], float]] = {}

    def synthesize(self, prep: object, **how: object) -> AsyncIterator[object]:
        text = "".join(p for p in prep.pieces if isinstance(p, str))  # type: ignore[attr-defined]
        needed = how.get("needed_at")
        if callable(needed):
            self.needed[text] = needed  # type: ignore[assignment]

        async def run() -> AsyncIterator[object]:
            self.events.append(("start", text))
            async for chunk in self.inner(prep, **how):
                yield chunk
            self.events.append(("done", text))

        return run()

    def texts(self) -> list[str]:
        return [text for kind, text in self.events if kind == "start"]

    def index(self, kind: str, fragment: str) -> int:
        return next(
            i for i, (k, t) in enumerate(self.events) if k == kind and fragment in t
        )  # fmt: skip


@pytest.fixture
def calls(engine: object, monkeypatch: pytest.MonkeyPatch) -> CallLog:
    log = CallLog(engine)
    monkeypatch.setattr(engine, "synthesize", log.synthesize)
    return log


@pytest.fixture
def slowed(engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every model call 0.2 s slower (a Pi-class machine), the model itself unchanged: the
    scheduler's job hooks (given at construction; replaced here for the test) sleep first."""
    scheduler = engine.scheduler  # type: ignore[attr-defined]
    inner = scheduler._hooks

    class SlowHooks:
        def before_job(self) -> None:
            time.sleep(0.2)
            if inner is not None:
                inner.before_job()

        def after_job(self) -> None:
            if inner is not None:
                inner.after_job()

    monkeypatch.setattr(scheduler, "_hooks", SlowHooks())


async def serve(engine: object, **wyoming: object) -> WyomingService:
    """A Wyoming listener over the session engine with these ``wyoming`` settings."""
    from fastkokoro_wyoming.config import WyomingConfig

    settings = dataclasses.replace(
        WyomingConfig(host="127.0.0.1", port=0, zeroconf=False),
        **wyoming,  # type: ignore[arg-type]
    )
    return await start_wyoming_server(engine, settings)  # type: ignore[arg-type]


def client(service: WyomingService):  # noqa: ANN201 - AsyncTcpClient
    from wyoming.client import AsyncTcpClient

    return AsyncTcpClient("127.0.0.1", service.port)


async def test_next_sentence_is_synthesized_while_the_one_before_is_sent(engine, calls, slowed):
    """On a slowed engine the second sentence's synthesis starts before the first one's
    has finished (the old handler started it only after the first was fully sent), and
    its model calls are due after the first one's, when its audio is needed."""
    service = await serve(engine, stall_timeout_s=0.0)
    try:
        async with client(service) as c:
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeChunk(text=THREE[:80]).event())
            for i in range(80, len(THREE), 6):  # an LLM writing the rest
                await c.write_event(SynthesizeChunk(text=THREE[i : i + 6]).event())
                await asyncio.sleep(0.05)
            await c.write_event(Synthesize(text=THREE).event())
            await c.write_event(SynthesizeStop().event())
            events = await read_until(c, "synthesize-stopped")
    finally:
        await service.stop()
    assert "error" not in types_of(events)
    assert calls.texts() == [
        "The museum opens at nine in the morning and closes at six in the evening.",
        "Visitors can buy tickets at the entrance or on the website.",
        "Guided tours leave from the main hall every hour.",
    ]
    assert calls.index("start", "Visitors") < calls.index("done", "The museum")
    assert calls.index("start", "Guided") < calls.index("done", "Visitors")
    # deadlines: the second sentence is due no sooner than the first one's start
    first, second = (calls.needed[t]() for t in calls.texts()[:2])
    assert second > first
    await assert_says(wyoming_audio(events), THREE)  # in order, every word


async def test_first_audio_comes_at_the_first_clause(engine, calls):
    """A clause boundary after enough words starts speaking before the sentence ends:
    text keeps arriving (no stall) and no sentence end is sent until audio comes."""
    service = await serve(engine, first_clause_words=6, stall_timeout_s=0.0)
    clause, rest = CLAUSE.split(", ", 1)
    try:
        async with client(service) as c:
            await c.write_event(SynthesizeStart().event())
            words = (clause + ", ").split(" ")
            for word in words[:-1]:
                await c.write_event(SynthesizeChunk(text=word + " ").event())
                await asyncio.sleep(0.05)
            reading = asyncio.ensure_future(read_until(c, "audio-chunk"))
            for word in rest.split(" ")[:4]:  # more of the sentence, no end yet
                await c.write_event(SynthesizeChunk(text=word + " ").event())
                await asyncio.sleep(0.3)
            first = await asyncio.wait_for(reading, TIMEOUT)  # before the stop is sent
            await c.write_event(SynthesizeChunk(text=" ".join(rest.split(" ")[4:])).event())
            await c.write_event(SynthesizeStop().event())
            events = first + await read_until(c, "synthesize-stopped")
    finally:
        await service.stop()
    assert types_of(first)[-1] == "audio-chunk"
    assert calls.texts()[0] == clause + ","
    assert calls.texts()[1] == rest
    kinds = types_of(events)
    assert "error" not in kinds and kinds.count("audio-start") == 1
    await assert_says(wyoming_audio(events), CLAUSE)  # the cut clips no word


async def test_stalled_text_is_spoken(engine, calls):
    """An LLM that stops mid-sentence (a tool call): what it wrote is spoken."""
    service = await serve(engine, stall_timeout_s=0.5)
    text = "Let me check the thermostat in the living room for you"
    try:
        async with client(service) as c:
            await c.write_event(SynthesizeStart().event())
            for i in range(0, len(text), 5):
                await c.write_event(SynthesizeChunk(text=text[i : i + 5]).event())
            first = await read_until(c, "audio-chunk")  # nothing else is sent
            await c.write_event(SynthesizeChunk(text=". It is at twenty degrees.").event())
            await c.write_event(SynthesizeStop().event())
            events = first + await read_until(c, "synthesize-stopped")
    finally:
        await service.stop()
    assert calls.texts()[0] == text
    assert "error" not in types_of(events)
    await assert_says(wyoming_audio(events), text + ". It is at twenty degrees.")


async def test_disconnect_mid_stream_leaves_the_scheduler_empty(engine, calls, slowed):
    service = await serve(engine)
    try:
        async with client(service) as c:
            await c.write_event(SynthesizeStart().event())
            await c.write_event(SynthesizeChunk(text=THREE + " " + THREE).event())
            event = await read_event(c)
            while event.type != "audio-chunk":
                event = await read_event(c)
            assert len(calls.texts()) >= 2  # the next sentence was under way too
        # gone: every piece's queued model calls are dropped
        await wait_idle(engine, deadline=30.0)
        assert engine.scheduler.queued == 0 and engine.active_streams == 0
    finally:
        await service.stop()
