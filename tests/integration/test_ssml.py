"""SSML on the real model, through both front ends with real clients: pocketsphinx hears
``sub``, ``phoneme`` and each ``say-as``; ``break`` is a measured run of silence; ``prosody
rate`` a duration ratio; malformed documents end each protocol's request cleanly.
About 60-90 s on two shared cores (each case is one short synthesis)."""

from __future__ import annotations

import aiohttp
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI
from wyoming.audio import AudioStop
from wyoming.error import Error
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
)

from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.serving.plan import Segment
from tests.support.daemon import (
    TIMEOUT,
    assert_says,
    pcm16_to_float,
    read_until,
    types_of,
    wyoming_audio,
    wyoming_client,
)
from tests.support.engines import collect

pytestmark = pytest.mark.integration


async def speak(engine, doc: str) -> np.ndarray:
    return await collect(engine.synthesize(engine.prepare(SynthesisRequest(doc, ssml=True))))


def longest_silence(audio: np.ndarray, level: float = 1e-3) -> float:
    """Seconds of the longest run under ``level`` (-60 dBFS), in 10 ms frames."""
    frames = audio[: audio.size // 240 * 240].reshape(-1, 240)
    quiet = np.abs(frames).max(axis=1) < level
    best = run = 0
    for q in quiet:
        run = run + 1 if q else 0
        best = max(best, run)
    return best * 0.01


# --- what is said: pocketsphinx ---------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "heard"),
    [
        (
            'Turn on the <sub alias="kitchen lights">KL</sub> and water the '
            '<phoneme alphabet="ipa" ph="ˈɡɑɹdən">qqq</phoneme> today.',
            "turn on the kitchen lights and water the garden today",
        ),
        (
            'There are <say-as interpret-as="cardinal">42</say-as> apples. It is the '
            '<say-as interpret-as="ordinal">3</say-as> time. The code is '
            '<say-as interpret-as="digits">1234</say-as>.',
            "there are forty two apples it is the third time the code is one two three four",
        ),
        (
            'Check the <say-as interpret-as="characters">TV</say-as> now. Call '
            '<say-as interpret-as="telephone">555-0123</say-as>. It starts '
            '<say-as interpret-as="date" format="mdy">3/5/2024</say-as>.',
            "check the t v now call five five five zero one two three it starts march fifth "
            "twenty twenty four",
        ),
    ],
    ids=["sub-phoneme", "cardinal-ordinal-digits", "characters-telephone-date"],
)
async def test_ssml_is_read_as_written(engine, doc, heard):
    await assert_says(await speak(engine, f"<speak>{doc}</speak>"), heard)


async def test_break_is_a_run_of_silence(engine):
    plain = await speak(engine, "<speak>One two three. Four five six.</speak>")
    paused = await speak(engine, '<speak>One two three. <break time="2s"/> Four five six.</speak>')
    assert longest_silence(plain) < 1.2  # Kokoro's own padding between two sentences
    assert longest_silence(paused) >= 2.0
    assert paused.size / 24000 - plain.size / 24000 == pytest.approx(2.0, abs=0.3)
    await assert_says(paused, "one two three four five six")


async def test_prosody_rate_scales_the_duration(engine):
    text = "The weather today is sunny and warm."
    normal = await speak(engine, f"<speak>{text}</speak>")
    slow = await speak(engine, f'<speak><prosody rate="50%">{text}</prosody></speak>')
    fast = await speak(engine, f'<speak><prosody rate="200%">{text}</prosody></speak>')
    assert slow.size / normal.size > 1.6  # 2x the speech, the same fixed padding
    assert fast.size / normal.size < 0.7
    await assert_says(slow, text)


async def test_lang_reads_with_that_languages_g2p_and_voice(engine):
    doc = '<speak>Hello. <lang xml:lang="fr-FR">Bonjour mes amis.</lang> Goodbye.</speak>'
    prep = engine.prepare(SynthesisRequest(doc, ssml=True))
    segs = [s for s in engine.planner.plan(prep) if isinstance(s, Segment)]
    french = [s for s in segs if s.voice is not None]
    assert [s.voice.name for s in french] == ["ff_siwis"]
    assert "ʒ" in french[0].phonemes  # French G2P: "bonjour" /bɔ̃ʒuʁ/
    assert (await speak(engine, doc)).size > 24000


# --- Wyoming: text_format "ssml" --------------------------------------------------------


async def test_wyoming_synthesize_ssml(daemon):
    doc = '<speak>Turn on the <sub alias="kitchen lights">KL</sub> please.</speak>'
    async with wyoming_client(daemon) as client:
        await client.write_event(Synthesize(text=doc, text_format="ssml").event())
        events = await read_until(client, AudioStop().event().type)
    assert types_of(events).count("audio-stop") == 1
    await assert_says(wyoming_audio(events), "turn on the kitchen lights please")


async def test_wyoming_streaming_ssml_in_chunks(daemon):
    doc = (
        '<speak><prosody rate="90%">Check the <say-as interpret-as="characters">TV</say-as> '
        'now.</prosody> <break time="2s"/> There are <say-as interpret-as="cardinal">42</say-as>'
        " apples.</speak>"
    )
    async with wyoming_client(daemon) as client:
        await client.write_event(SynthesizeStart(text_format="ssml").event())
        for i in range(0, len(doc), 9):  # chunks cut tags and words anywhere
            await client.write_event(SynthesizeChunk(text=doc[i : i + 9]).event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, SynthesizeStopped().event().type)
    kinds = types_of(events)
    assert "error" not in kinds and kinds[-1] == "synthesize-stopped"
    audio = wyoming_audio(events)
    assert longest_silence(audio) >= 2.0
    await assert_says(audio, "check the t v now there are forty two apples")


async def test_wyoming_malformed_ssml_errors_ends_and_keeps_serving(daemon):
    async with wyoming_client(daemon) as client:
        await client.write_event(
            Synthesize(text="<speak>a <b></speak>", text_format="ssml").event()
        )
        events = await read_until(client, AudioStop().event().type)
        assert types_of(events) == ["error", "audio-stop"]
        error = Error.from_event(events[0])
        assert error.code == "invalid_ssml" and "line 1, column 15" in error.text
        await client.write_event(SynthesizeStart(text_format="ssml").event())
        await client.write_event(SynthesizeChunk(text="<speak>Hi <b>x</c></speak>").event())
        await client.write_event(SynthesizeStop().event())
        events = await read_until(client, SynthesizeStopped().event().type)
        assert types_of(events)[0] == "error" and types_of(events)[-1] == "synthesize-stopped"
        assert Error.from_event(events[0]).code == "invalid_ssml"
        await client.write_event(Describe().event())  # the same connection still answers
        assert Info.is_type((await read_until(client, "info"))[-1].type)


# --- HTTP: ssml / input_format ----------------------------------------------------------


def base_url(daemon) -> str:
    return f"http://127.0.0.1:{daemon.http.port}"


async def test_http_ssml_with_the_openai_sdk(daemon):
    doc = '<speak>There are <say-as interpret-as="cardinal">42</say-as> apples.</speak>'
    async with AsyncOpenAI(
        base_url=base_url(daemon) + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0
    ) as client:
        reply = await client.audio.speech.create(
            model="kokoro",
            voice="af_heart",
            input=doc,
            response_format="pcm",
            extra_body={"ssml": True},  # Kokoro-FastAPI's flag
        )
        await assert_says(pcm16_to_float(reply.content), "there are forty two apples")
        with pytest.raises(openai.BadRequestError) as err:
            await client.audio.speech.create(
                model="kokoro", voice="af_heart", input="<speak>\n<p>x</speak>",
                extra_body={"ssml": True},
            )  # fmt: skip
    body = err.value.body
    assert isinstance(body, dict)
    assert (body["code"], body["param"]) == ("invalid_ssml", "input")
    assert "line 2, column 7" in body["message"]


async def test_http_input_format_ssml_with_aiohttp(daemon):
    body = {
        "input": 'Check the <say-as interpret-as="characters">TV</say-as> now.',
        "voice": "af_heart",
        "response_format": "pcm",
        "input_format": "ssml",
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url(daemon) + "/v1/audio/speech", json=body) as resp:
            assert resp.status == 200
            audio = pcm16_to_float(await resp.read())
        dtd = {**body, "input": '<!DOCTYPE s [<!ENTITY a "b">]><speak>&a;</speak>'}
        async with http.post(base_url(daemon) + "/v1/audio/speech", json=dtd) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
    await assert_says(audio, "check the t v now")
    assert error["code"] == "invalid_ssml" and "DTD" in error["message"]
