"""Wyoming on the real model, with wyoming's own AsyncTcpClient playing Home Assistant."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.support.daemon import (
    MUSEUM,
    TWO,
    assert_says,
    read_event,
    read_until,
    types_of,
    wait_idle,
    wyoming_audio,
    wyoming_client,
)

pytestmark = pytest.mark.integration

LOCALES = {"en-US", "en-GB", "ja-JP", "zh-CN", "es-ES", "fr-FR", "hi-IN", "it-IT", "pt-BR"}
# A short first sentence, so it is released (when the next one starts) and spoken early,
# while the rest still trickles in at about 65 characters a second, like a streaming LLM.
REPLY = (
    "Sure thing. I turned off the lights in the kitchen and the hallway, and I locked the "
    "front door and the back door for you. The living room thermostat is now set to twenty "
    "degrees, and it will stay there for the rest of the evening until you go to bed."
)


async def synthesize(daemon, text: str, voice: SynthesizeVoice | None = None) -> list:
    """One non-streaming request on its own connection; every event up to audio-stop."""
    async with wyoming_client(daemon) as client:
        await client.write_event(Synthesize(text=text, voice=voice).event())
        return await read_until(client, AudioStop().event().type)


def assert_one_cycle(events: list) -> None:
    """audio-start, audio-chunk+, exactly one audio-stop, at the end (what HA keeps)."""
    kinds = types_of(events)
    assert kinds[0] == "audio-start", kinds
    assert kinds[-1] == "audio-stop", kinds
    assert kinds.count("audio-start") == 1 and kinds.count("audio-stop") == 1, kinds
    assert set(kinds[1:-1]) == {"audio-chunk"}, kinds
    start = AudioStart.from_event(events[0])
    assert (start.rate, start.width, start.channels) == (24000, 2, 1)


async def test_describe_lists_every_voice(daemon):
    async with wyoming_client(daemon) as client:
        await client.write_event(Describe().event())
        event = await read_event(client)
    assert Info.is_type(event.type)
    info = Info.from_event(event)
    assert len(info.tts) == 1
    program = info.tts[0]
    assert program.installed and program.supports_synthesize_streaming
    assert len(program.voices) == 54
    assert len({v.name for v in program.voices}) == 54
    assert all(v.installed for v in program.voices)
    assert all(len(v.languages) == 1 and v.languages[0] in LOCALES for v in program.voices)
    assert {v.languages[0] for v in program.voices} == LOCALES
    by_name = {v.name: v.languages[0] for v in program.voices}
    assert by_name["af_heart"] == "en-US" and by_name["bf_emma"] == "en-GB"
    assert by_name["jf_alpha"] == "ja-JP" and by_name["zf_xiaobei"] == "zh-CN"


async def test_synthesize_without_voice_like_home_assistant(daemon):
    events = await synthesize(daemon, TWO)
    assert_one_cycle(events)
    audio = wyoming_audio(events)
    assert 3.0 < audio.size / 24000 < 12.0
    await assert_says(audio, TWO)


@pytest.mark.parametrize("voice", ["am_michael", "af_bella(2)+af_sky(1)"])
async def test_synthesize_with_voice_name_and_blend(daemon, voice):
    text = "Please remember to water the garden."
    events = await synthesize(daemon, text, SynthesizeVoice(name=voice))
    assert_one_cycle(events)
    await assert_says(wyoming_audio(events), text)


async def test_voice_by_language_only_gives_a_british_voice(daemon, engine):
    text = "Good morning."
    british = engine.default_voice("en-GB")
    assert british.startswith("b")
    by_lang = wyoming_audio(await synthesize(daemon, text, SynthesizeVoice(language="en-GB")))
    by_name = wyoming_audio(await synthesize(daemon, text, SynthesizeVoice(name=british)))
    american = wyoming_audio(await synthesize(daemon, text))
    # The model is deterministic: the same voice gives the same samples.
    assert by_lang.size > 0
    assert np.array_equal(by_lang, by_name)
    assert not (by_lang.size == american.size and np.array_equal(by_lang, american))


async def test_streaming_like_home_assistant_llm(daemon):
    """synthesize-start, the reply in small pieces split inside words, the compatibility
    synthesize, synthesize-stop: audio must start before the stop is sent."""
    log: list[str] = []  # events received and "sent stop", in the order they happened
    events = []
    async with wyoming_client(daemon) as client:

        async def reader() -> None:
            while True:
                event = await read_event(client)
                events.append(event)
                log.append(event.type)
                if SynthesizeStopped.is_type(event.type):
                    return

        reading = asyncio.create_task(reader())
        await client.write_event(SynthesizeStart().event())
        for i in range(0, len(REPLY), 4):
            await client.write_event(SynthesizeChunk(text=REPLY[i : i + 4]).event())
            await asyncio.sleep(0.06)
        await client.write_event(Synthesize(text=REPLY).event())  # HA's compatibility copy
        log.append("sent synthesize-stop")
        await client.write_event(SynthesizeStop().event())
        await asyncio.wait_for(reading, 120)

    assert "audio-chunk" in log
    assert log.index("audio-chunk") < log.index("sent synthesize-stop"), log
    kinds = types_of(events)
    assert kinds[-1] == "synthesize-stopped"
    assert "error" not in kinds
    assert kinds[0] == "audio-start"  # no chunk before the first start
    assert kinds.count("audio-start") == kinds.count("audio-stop") >= 1
    # The compatibility synthesize is ignored: the reply is spoken once (about 15 s, not 30).
    audio = wyoming_audio(events)
    assert 8.0 < audio.size / 24000 < 25.0
    await assert_says(audio, REPLY)


async def test_bad_voice_non_streaming_error_then_audio_stop(daemon):
    async with wyoming_client(daemon) as client:
        voice = SynthesizeVoice(name="zz_nobody")
        await client.write_event(Synthesize(text="Hello there.", voice=voice).event())
        events = await read_until(client, "audio-stop")
    kinds = types_of(events)
    assert kinds == ["error", "audio-stop"], kinds
    error = Error.from_event(events[0])
    assert error.code and "zz_nobody" in error.text
    # The server is still serving, on a new connection.
    events = await synthesize(daemon, "Hello there.")
    assert_one_cycle(events)


async def test_bad_voice_streaming_error_then_synthesize_stopped(daemon):
    async with wyoming_client(daemon) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="zz_nobody")).event())
        await client.write_event(SynthesizeChunk(text="Hello there. How are").event())
        await client.write_event(SynthesizeChunk(text=" you today?").event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, "synthesize-stopped")
    kinds = types_of(events)
    assert kinds == ["error", "synthesize-stopped"], kinds
    assert Error.from_event(events[0]).code
    events = await synthesize(daemon, "Hello there.")
    assert_one_cycle(events)


async def test_empty_text_error_then_end_event(daemon):
    async with wyoming_client(daemon) as client:
        await client.write_event(Synthesize(text="").event())
        events = await read_until(client, "audio-stop")
    assert types_of(events) == ["error", "audio-stop"]
    assert Error.from_event(events[0]).code

    async with wyoming_client(daemon) as client:
        await client.write_event(SynthesizeStart().event())
        await client.write_event(SynthesizeChunk(text="   ").event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, "synthesize-stopped")
    assert types_of(events) == ["error", "synthesize-stopped"]
    assert Error.from_event(events[0]).code


async def test_describe_answered_while_another_connection_synthesizes(daemon, engine):
    long_text = MUSEUM
    async with wyoming_client(daemon) as busy:
        await busy.write_event(Synthesize(text=long_text).event())
        first = await read_until(busy, "audio-chunk")  # synthesis is under way
        assert types_of(first) == ["audio-start", "audio-chunk"]
        async with wyoming_client(daemon) as other:
            await other.write_event(Describe().event())
            info = await read_event(other)
            still_running = engine.active_streams > 0
        assert Info.is_type(info.type)
        assert still_running, "describe was only answered after the synthesis finished"
        rest = await read_until(busy, "audio-stop")
    assert types_of(rest)[-1] == "audio-stop"
    assert AudioChunk.is_type(rest[0].type)


async def test_unknown_event_is_ignored_and_connection_stays_open(daemon):
    async with wyoming_client(daemon) as client:
        await client.write_event(Event(type="not-a-real-event", data={"x": 1}))
        await client.write_event(Describe().event())
        assert Info.is_type((await read_event(client)).type)


async def test_disconnect_mid_synthesis_drops_the_work(daemon, engine):
    text = " ".join(["Guided tours leave from the main hall every hour."] * 12)
    async with wyoming_client(daemon) as client:
        await client.write_event(Synthesize(text=text).event())
        await read_until(client, "audio-chunk")
    # The connection is closed: at most the model call in flight finishes.
    await wait_idle(engine, deadline=20.0)
    events = await synthesize(daemon, "Hello there.")
    assert_one_cycle(events)
