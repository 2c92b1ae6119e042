"""Typography, inline phonemes, the lexicon and the phoneme routes on the real model,
with real clients: aiohttp (Kokoro-FastAPI's /dev routes), the openai SDK and wyoming's
AsyncTcpClient. pocketsphinx listens where audio is involved. ~60-90 s on 2 shared cores.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI
from wyoming.error import Error
from wyoming.tts import Synthesize

from fastkokoro_wyoming.engine.text import lexicon as lexicon_module
from fastkokoro_wyoming.engine.text.lexicon import Lexicon
from fastkokoro_wyoming.engine.types import SynthesisRequest
from tests.support.daemon import assert_says, read_until, types_of, wyoming_audio, wyoming_client
from tests.support.engines import collect
from tests.support.speech import transcribe, words

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=300)
# The three kinds of trap: a curly negation at a sentence end, markdown around an
# inline pronunciation, and an LLM reply with typography, units and a list.
TRICKY = [
    ("No, it isn’t.", "ˈɪzᵊnt."),
    ("**[Kokoro](/kˈOkəɹO/)** — the voice — doesn’t mind.", "kˈOkəɹO"),
    ("It’s −3 °C… wrap up!\n- Hat\n- Gloves", "mˈInəs θɹˈi"),
]
# Replies from the corpus (tests/data/replies.yaml), typographic: what pocketsphinx must
# hear, and the negation it must hear (the issue: the reply's meaning flipped). The
# short ones ("No, it isn’t.") are checked for the negation only: pocketsphinx hears
# "no" as "now" there.
HEARD = [
    ("I don’t have access to your calendar.", "I don't have access to your calendar", "don't"),
    ("There isn’t a timer running right now.", "There isn't a timer running right now", "isn't"),
    ("It isn’t going to snow.", "It isn't going to snow", "isn't"),
    ("No, it isn’t.", None, "isn't"),
    ("No, it wasn’t.", None, "wasn't"),
]


def url(daemon: object, path: str) -> str:
    return f"http://127.0.0.1:{daemon.http.port}{path}"  # type: ignore[attr-defined]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


async def phonemize(
    http: aiohttp.ClientSession, daemon: object, text: str, lang: str = "a"
) -> dict:
    async with http.post(url(daemon, "/dev/phonemize"), json={"text": text, "language": lang}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_phonemize_tricky_replies(daemon, http) -> None:
    for text, expected in TRICKY:
        got = await phonemize(http, daemon, text)
        print(f"{text!r} -> {got['phonemes']!r}")
        assert expected in got["phonemes"]
        assert len(got["tokens"]) == len(got["phonemes"]) and all(
            0 < t < 178 for t in got["tokens"]
        )


async def test_phonemize_refuses_an_unknown_symbol_and_a_bad_language(daemon, http) -> None:
    async with http.post(url(daemon, "/dev/phonemize"), json={"text": "[x](/ə$/)"}) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] == "text" and "'$'" in error["message"]
    async with http.post(url(daemon, "/dev/phonemize"), json={"text": "a", "language": "xx"}) as r:
        assert r.status == 400
        assert (await r.json())["error"]["param"] == "language"


async def test_generate_from_phonemes_streams_what_phonemize_gave(daemon, http) -> None:
    text = "The weather today is sunny and warm."
    phonemes = (await phonemize(http, daemon, text))["phonemes"]
    body = {"phonemes": phonemes, "voice": "af_heart", "response_format": "pcm"}
    async with http.post(url(daemon, "/dev/generate_from_phonemes"), json=body) as r:
        assert r.status == 200, await r.text()
        assert r.headers.get("Transfer-Encoding") == "chunked"
        pcm = await r.read()
    await assert_says(np.frombuffer(pcm, "<i2").astype(np.float32) / 32768, text)
    async with http.post(
        url(daemon, "/dev/generate_from_phonemes"), json={"phonemes": phonemes, "voice": "af_heart"}
    ) as r:  # Kokoro-FastAPI's request: wav by default
        assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
        assert (await r.read())[:4] == b"RIFF"


async def test_generate_from_phonemes_names_an_unknown_symbol(daemon, http) -> None:
    body = {"phonemes": "həlˈO ʀ", "voice": "af_heart"}
    async with http.post(url(daemon, "/dev/generate_from_phonemes"), json=body) as r:
        assert r.status == 400
        error = (await r.json())["error"]
    assert error["param"] == "phonemes" and "U+0280" in error["message"]


async def test_corpus_replies_are_heard_with_their_negations(engine) -> None:
    for text, reference, negation in HEARD:
        prep = engine.prepare(SynthesisRequest(text, voice="af_heart"))
        audio = await collect(engine.synthesize(prep))
        heard = (
            await assert_says(audio, reference)
            if reference
            else await asyncio.to_thread(transcribe, audio)
        )
        assert negation in words(heard), (text, heard)


async def test_openai_sdk_inline_phonemes_and_a_bad_symbol(daemon) -> None:
    async with AsyncOpenAI(
        base_url=url(daemon, "/v1"), api_key="unused", timeout=300, max_retries=0
    ) as client:
        reply = await client.audio.speech.create(
            model="kokoro",
            voice="af_heart",
            input="Say [tomato](/təmˈɑtO/) please.",
            response_format="pcm",
        )
        audio = np.frombuffer(reply.content, "<i2").astype(np.float32) / 32768
        await assert_says(audio, "Say tomato please")
        with pytest.raises(openai.BadRequestError) as info:
            await client.audio.speech.create(
                model="kokoro", voice="af_heart", input="Say [tomato](/tə#mˈɑtO/)."
            )
    body = info.value.body
    assert isinstance(body, dict) and body["param"] == "input" and "'#'" in body["message"]


async def test_wyoming_inline_bad_symbol_is_an_error_then_audio_stop(daemon) -> None:
    async with wyoming_client(daemon) as client:
        await client.write_event(Synthesize(text="Hello [there](/ðɛɹ%/).").event())
        events = await read_until(client, "audio-stop")
    assert types_of(events) == ["error", "audio-stop"]
    assert "'%'" in Error.from_event(events[0]).text
    async with wyoming_client(daemon) as client:  # and inline phonemes that are fine speak
        await client.write_event(Synthesize(text="Hello [world](/wˈɜɹld/), good morning.").event())
        events = await read_until(client, "audio-stop")
    await assert_says(wyoming_audio(events), "Hello world good morning")


@pytest.fixture
def lexicon_file(engine, tmp_path, monkeypatch) -> Iterator[Path]:
    """A lexicon on the session engine for one test (checked on every call)."""
    monkeypatch.setattr(lexicon_module, "CHECK_INTERVAL_S", 0.0)
    path = tmp_path / "lexicon.yaml"
    path.write_text("en-US:\n  Zorblax: zˈɔɹblæks\n", "utf-8")
    engine.g2p.lexicon = Lexicon(path, engine.vocab, engine.languages)
    try:
        yield path
    finally:
        engine.g2p.lexicon = None


async def test_lexicon_applies_reloads_and_keeps_the_written_word(
    daemon, http, lexicon_file
) -> None:
    got = await phonemize(http, daemon, "Ask ZORBLAX now.")
    assert "zˈɔɹblæks" in got["phonemes"]
    lexicon_file.write_text("en-US:\n  Zorblax: tˈɑmi\n", "utf-8")
    future = time.time_ns() + 5 * 10**9
    await asyncio.to_thread(os.utime, lexicon_file, ns=(future, future))
    got = await phonemize(http, daemon, "Ask ZORBLAX now.")
    assert "tˈɑmi" in got["phonemes"] and "zˈɔɹblæks" not in got["phonemes"]
    body = {
        "input": "Ask Zorblax now.",
        "voice": "af_heart",
        "response_format": "pcm",
        "stream": False,
    }
    async with http.post(url(daemon, "/dev/captioned_speech"), json=body) as r:
        assert r.status == 200, await r.text()
        words = [w["word"] for w in json.loads(await r.read())["timestamps"]]
    assert words == ["Ask", "Zorblax", "now"]
