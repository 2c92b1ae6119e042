"""The OpenAI-compatible API on the real model: the openai SDK, raw aiohttp, PyAV and ffprobe."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
from collections.abc import AsyncIterator

import aiohttp
import av
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI

from tests.support.daemon import (
    MUSEUM,
    TIMEOUT,
    TWO,
    assert_says,
    pcm16_to_float,
    wait_idle,
)

pytestmark = pytest.mark.integration

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
CONTENT_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FFPROBE_CODECS = {
    "mp3": "mp3",
    "opus": "opus",
    "aac": "aac",
    "flac": "flac",
    "wav": "pcm_s16le",
    "pcm": "pcm_s16le",
}
LONG = (
    MUSEUM + " Children under twelve must be accompanied by an adult."
    " We hope you enjoy your visit and come back soon."
)


def base_url(daemon) -> str:
    return f"http://127.0.0.1:{daemon.http.port}"


@pytest.fixture
async def client(daemon) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(
        base_url=base_url(daemon) + "/v1", api_key="unused", timeout=TIMEOUT, max_retries=0
    ) as c:
        yield c


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=TIMEOUT, sock_connect=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        yield session


async def post_speech(http: aiohttp.ClientSession, daemon, body: dict) -> tuple[int, bytes]:
    async def go() -> tuple[int, bytes]:
        async with http.post(base_url(daemon) + "/v1/audio/speech", json=body) as resp:
            return resp.status, await resp.read()

    return await asyncio.wait_for(go(), TIMEOUT)


@pytest.fixture(scope="module")
def reference_seconds() -> dict[str, float]:
    """Text -> seconds of raw PCM the server made for it (filled on first use)."""
    return {}


async def pcm_seconds(http, daemon, cache: dict[str, float], text: str) -> float:
    if text not in cache:
        status, data = await post_speech(
            http,
            daemon,
            {"model": "tts-1", "input": text, "voice": "af_heart", "response_format": "pcm"},
        )
        assert status == 200
        cache[text] = len(data) / 2 / 24000
    return cache[text]


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int, int]:
    """Encoded audio -> (float32 mono samples, sample rate, channels) with PyAV."""
    if fmt == "pcm":  # no header: s16le 24 kHz mono by contract
        assert len(data) % 2 == 0
        return pcm16_to_float(data), 24000, 1
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        channels = stream.codec_context.channels
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        parts = []
        for frame in container.decode(stream):
            assert frame.sample_rate == rate and frame.layout.nb_channels == channels
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
        parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32), rate, channels


def ffprobe(data: bytes, fmt: str, tmp_path) -> dict:
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(data)
    raw = ["-f", "s16le", "-ar", "24000", "-ac", "1"] if fmt == "pcm" else []
    proc = subprocess.run(
        [
            "/usr/bin/ffprobe",
            "-v",
            "error",
            *raw,
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def check_audio(data: bytes, fmt: str, text: str, ref_seconds: float, tmp_path) -> None:
    samples, rate, channels = await asyncio.to_thread(decode, data, fmt)
    assert channels == 1
    assert rate == (48000 if fmt == "opus" else 24000)  # libopus only encodes 48k (and less)
    seconds = samples.size / rate
    assert 0.75 * ref_seconds <= seconds <= 1.25 * ref_seconds, (seconds, ref_seconds)
    probe = await asyncio.to_thread(ffprobe, data, fmt, tmp_path)
    (stream,) = probe["streams"]
    assert stream["codec_name"] == FFPROBE_CODECS[fmt]
    assert stream["channels"] == 1
    assert int(stream["sample_rate"]) == rate
    await assert_says(samples, text, rate)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_create_every_format(daemon, client, http, reference_seconds, tmp_path, fmt):
    ref = await pcm_seconds(http, daemon, reference_seconds, TWO)
    response = await client.audio.speech.create(
        model="tts-1", voice="af_heart", input=TWO, response_format=fmt
    )
    assert response.response.headers["content-type"].startswith(CONTENT_TYPES[fmt])
    await check_audio(response.content, fmt, TWO, ref, tmp_path)


@pytest.mark.parametrize("fmt", FORMATS)
async def test_streaming_response_every_format(
    daemon, client, http, reference_seconds, tmp_path, fmt
):
    ref = await pcm_seconds(http, daemon, reference_seconds, TWO)
    parts: list[bytes] = []
    async with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="af_heart", input=TWO, response_format=fmt
    ) as response:
        assert response.headers["content-type"].startswith(CONTENT_TYPES[fmt])
        async for part in response.iter_bytes():
            parts.append(part)
    await check_audio(b"".join(parts), fmt, TWO, ref, tmp_path)


async def test_openai_voice_name_and_default_mp3(daemon, client, http, reference_seconds, tmp_path):
    """Open WebUI sends no response_format (mp3) and often an OpenAI voice name."""
    ref = await pcm_seconds(http, daemon, reference_seconds, TWO)
    response = await client.audio.speech.create(model="tts-1", voice="alloy", input=TWO)
    assert response.response.headers["content-type"].startswith("audio/mpeg")
    # af_alloy, not af_heart: only the duration is compared loosely
    await check_audio(response.content, "mp3", TWO, ref, tmp_path)


async def test_sse_deltas_then_done(daemon, http):
    body = {
        "model": "gpt-4o-mini-tts",
        "input": TWO,
        "voice": "af_heart",
        "response_format": "pcm",
        "stream_format": "sse",
    }

    async def go() -> tuple[str, str]:
        async with http.post(base_url(daemon) + "/v1/audio/speech", json=body) as resp:
            assert resp.status == 200
            return resp.headers["content-type"], (await resp.read()).decode()

    content_type, text = await asyncio.wait_for(go(), TIMEOUT)
    assert content_type.startswith("text/event-stream")
    events = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(fields["data"])
        assert fields["event"] == data["type"]
        events.append(data)
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and kinds.count("speech.audio.done") == 1
    assert set(kinds[:-1]) == {"speech.audio.delta"}
    usage = events[-1]["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    await assert_says(pcm16_to_float(pcm), TWO)


async def test_long_stream_first_bytes_arrive_while_synthesizing(daemon, engine, http):
    body = {"model": "tts-1", "input": LONG, "voice": "af_heart", "response_format": "pcm"}

    async def go() -> tuple[bytes, bool, bytes]:
        async with http.post(base_url(daemon) + "/v1/audio/speech", json=body) as resp:
            assert resp.status == 200
            first = await resp.content.readany()
            running = engine.active_streams > 0
            rest = await resp.read()
            return first, running, rest

    first, running, rest = await asyncio.wait_for(go(), 300)
    assert first, "no audio bytes"
    assert running, "the first bytes came only after synthesis had finished"
    assert len(rest) > 10 * len(first), (len(first), len(rest))
    audio = pcm16_to_float(first + rest)
    assert 15.0 < audio.size / 24000 < 60.0
    await assert_says(audio, LONG)


BAD_REQUESTS = {
    "unknown voice": ({"input": "Hello.", "voice": "zz_nobody"}, 400, "voice"),
    "empty input": ({"input": "", "voice": "af_heart"}, 400, "input"),
    "speed 100": ({"input": "Hello.", "voice": "af_heart", "speed": 100}, 400, "speed"),
    # The engine enforces the limit; the session engine's is 100_000 (tests/conftest.py).
    "too long": ({"input": "Hello there. " * 8000, "voice": "af_heart"}, 400, "input"),
    "bad format": (
        {"input": "Hello.", "voice": "af_heart", "response_format": "ogg"},
        400,
        "response_format",
    ),
    "unknown model": ({"model": "whisper-1", "input": "Hello.", "voice": "af_heart"}, 400, "model"),
}


async def assert_good_request_works(http, daemon) -> None:
    status, data = await post_speech(
        http,
        daemon,
        {"model": "tts-1", "input": "Hello.", "voice": "af_heart", "response_format": "pcm"},
    )
    assert status == 200 and len(data) > 24000 // 4


def assert_error_body(data: bytes, status: int, param: str | None) -> dict:
    error = json.loads(data)["error"]
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["message"]
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    if param is not None:
        assert error["param"] == param
    return error


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_bad_request_gets_openai_error_json(daemon, http, case):
    body, status, param = BAD_REQUESTS[case]
    got, data = await post_speech(http, daemon, {"model": "tts-1", **body})
    assert got == status, data
    assert_error_body(data, status, param)
    await assert_good_request_works(http, daemon)


async def test_malformed_json_and_unknown_route(daemon, http):
    async def raw(method: str, path: str, data: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"}
        async with http.request(method, base_url(daemon) + path, data=data, headers=headers) as r:
            return r.status, await r.read()

    status, data = await asyncio.wait_for(raw("POST", "/v1/audio/speech", b'{"input": "Hi",'), 60)
    assert status == 400
    assert_error_body(data, 400, None)
    await assert_good_request_works(http, daemon)

    status, data = await asyncio.wait_for(raw("GET", "/v1/no/such/route"), 60)
    assert status == 404
    assert_error_body(data, 404, None)
    await assert_good_request_works(http, daemon)


async def test_voice_as_an_id_object(daemon, http):
    """Newer SDKs may send a custom voice as {"id": ...}."""
    body = {
        "model": "tts-1",
        "input": "Hello.",
        "voice": {"id": "af_heart"},
        "response_format": "pcm",
    }
    status, data = await post_speech(http, daemon, body)
    assert status == 200 and len(data) > 24000 // 4


async def test_sdk_raises_bad_request_with_param(client):
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(model="tts-1", voice="zz_nobody", input="Hello.")
    assert info.value.status_code == 400
    assert info.value.param == "voice"
    assert "zz_nobody" in info.value.message


async def test_disconnect_mid_stream_drops_the_work(daemon, engine, http):
    text = " ".join([LONG, LONG])  # ~50 s of audio: far longer than the wait below
    body = {"model": "tts-1", "input": text, "voice": "af_heart", "response_format": "pcm"}

    async def first_chunk_then_close() -> bytes:
        resp = await http.post(base_url(daemon) + "/v1/audio/speech", json=body)
        try:
            assert resp.status == 200
            return await resp.content.readany()
        finally:
            resp.close()  # drops the connection, not just the response

    first = await asyncio.wait_for(first_chunk_then_close(), TIMEOUT)
    assert first
    # At most the model call in flight finishes; the rest of the queue is dropped.
    await wait_idle(engine, deadline=20.0)
    assert engine.active_streams == 0 and engine.scheduler.queued == 0
    await assert_good_request_works(http, daemon)
