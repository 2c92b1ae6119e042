"""Word timestamps over HTTP, read with a raw aiohttp client (no SDK).

``POST /dev/captioned_speech`` as Kokoro-FastAPI's README calls it (whole JSON and
NDJSON lines), and the opt-in ``timestamps`` extension of ``/v1/audio/speech``'s SSE.
pcm keeps the arithmetic plain: 2 bytes a sample at 24 kHz, so "the words of a line
finished within the audio received so far" can be checked exactly.
"""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest

pytestmark = pytest.mark.integration

TEXT = "The museum opens at 9:30 tomorrow. Tickets cost $12.50 at the door."
SPOKEN = ["The", "museum", "opens", "at", "9:30", "tomorrow", "Tickets", "cost", "$12.50"]
TIMEOUT = aiohttp.ClientTimeout(total=300)


def url(daemon: object, path: str) -> str:
    return f"http://127.0.0.1:{daemon.http.port}{path}"  # type: ignore[attr-defined]


def check_words(words: list[dict], audio_seconds: float) -> None:
    assert [w["word"] for w in words][: len(SPOKEN)] == SPOKEN
    assert [w["word"] for w in words][-3:] == ["at", "the", "door"]
    for before, after in zip(words, words[1:], strict=False):
        assert before["start_time"] <= before["end_time"] <= after["start_time"] + 1e-3
    assert words[-1]["end_time"] <= audio_seconds + 1e-3


async def test_kokoro_fastapi_documented_request_whole(daemon) -> None:
    """Kokoro-FastAPI README: ``stream: false``; ``audio`` base64, ``timestamps`` list."""
    body = {
        "model": "kokoro",
        "input": TEXT,
        "voice": "af_bella",
        "speed": 1.0,
        "response_format": "mp3",
        "stream": False,
    }
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.post(url(daemon, "/dev/captioned_speech"), json=body) as resp:
            assert resp.status == 200, await resp.text()
            data = json.loads(await resp.read())
    assert data["audio_format"] == "audio/mpeg"
    audio = base64.b64decode(data["audio"].encode("utf-8"))
    assert audio[:3] == b"ID3" or audio[0] == 0xFF
    check_words(data["timestamps"], 60.0)


async def test_captioned_ndjson_lines_carry_their_words(daemon) -> None:
    """Kokoro-FastAPI's streaming read: one JSON object a line; each line's words have
    finished within the audio of the lines so far."""
    body = {"input": TEXT, "voice": "af_heart", "response_format": "pcm", "stream": True}
    received = 0
    words: list[dict] = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.post(url(daemon, "/dev/captioned_speech"), json=body) as resp:
            assert resp.status == 200, await resp.text()
            assert resp.headers["Content-Type"].startswith("application/x-ndjson")
            lines = 0
            async for raw in resp.content:
                if not raw.strip():
                    continue
                line = json.loads(raw)
                lines += 1
                assert set(line) == {"audio", "audio_format", "timestamps"}
                received += len(base64.b64decode(line["audio"]))
                for word in line["timestamps"]:
                    assert word["end_time"] <= received / 2 / 24000 + 1e-3, word
                words += line["timestamps"]
    assert lines >= 3
    check_words(words, received / 2 / 24000)


async def test_return_timestamps_false_and_errors(daemon) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        body = {"input": "Hello there.", "stream": False, "return_timestamps": False}
        async with http.post(url(daemon, "/dev/captioned_speech"), json=body) as resp:
            assert resp.status == 200
            assert (await resp.json())["timestamps"] is None
        bad = {"input": "Hello there.", "voice": "xx_nobody"}
        async with http.post(url(daemon, "/dev/captioned_speech"), json=bad) as resp:
            assert resp.status == 400
            error = (await resp.json())["error"]
            assert error["param"] == "voice" and "xx_nobody" in error["message"]


async def test_sse_timestamps_follow_the_delta_that_finishes_them(daemon) -> None:
    body = {
        "model": "tts-1",
        "input": TEXT,
        "voice": "af_heart",
        "response_format": "pcm",
        "stream_format": "sse",
        "timestamps": True,
    }
    events: list[tuple[str, dict]] = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.post(url(daemon, "/v1/audio/speech"), json=body) as resp:
            assert resp.status == 200, await resp.text()
            name = ""
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
    kinds = [e["type"] for _, e in events]
    assert all(name == e["type"] for name, e in events)
    assert kinds[0] == "speech.audio.delta" and kinds[-1] == "speech.audio.done"
    assert "speech.audio.timestamps" in kinds
    received, words = 0, []
    for kind, event in events:
        if kind == "speech.audio.delta":
            received += len(base64.b64decode(event["audio"]))
        elif kind == "speech.audio.timestamps":
            for word in event["timestamps"]:
                assert word["end_time"] <= received / 2 / 24000 + 1e-3, word
            words += event["timestamps"]
    check_words(words, received / 2 / 24000)


async def test_plain_sse_and_raw_audio_see_nothing_new(daemon) -> None:
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        body = {"input": "Hello there.", "response_format": "pcm", "stream_format": "sse"}
        async with http.post(url(daemon, "/v1/audio/speech"), json=body) as resp:
            assert b"speech.audio.timestamps" not in await resp.read()
        body = {"input": "Hello there.", "timestamps": True}
        async with http.post(url(daemon, "/v1/audio/speech"), json=body) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["param"] == "timestamps"
