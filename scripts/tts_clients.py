"""Real clients for a running daemon, shared by scripts/image_check.py and
scripts/haproxy_replicas.py: the OpenAI SDK, wyoming's AsyncTcpClient (one connection per
request, as Home Assistant does) and pocketsphinx to check that the audio says the words.

They talk to whatever is at host:port (a container, a replica, a balancer), so nothing here
imports the daemon.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.speech import transcribe, word_accuracy  # noqa: E402

RATE = 24000


@dataclass
class Speech:
    """One request's audio (s16le 24 kHz mono) and when its first byte came."""

    pcm: bytes
    first_audio_s: float
    total_s: float
    served_by: str = ""  # a balancer's X-Served-By header (HTTP)
    client_port: int = 0  # our end of the connection (Wyoming), to find it in a balancer's log

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / RATE

    def accuracy(self, text: str) -> float:
        samples = np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768
        return word_accuracy(text, transcribe(samples, RATE))


def free_port() -> int:
    """A port free on 127.0.0.1 now (a replica, a balancer or a container binds it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(base: str, timeout: float, alive=lambda: True) -> float:
    """Seconds until ``GET base/health`` answers 200; raises on timeout or when ``alive`` fails."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if not alive():
            raise RuntimeError(f"{base}: the server exited before it was healthy")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
                if resp.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{base}/health not 200 after {timeout:.0f} s")


def openai_speech(
    base_url: str,
    text: str,
    voice: str = "af_heart",
    timeout: float = 300,
    max_retries: int = 0,
    on_status=None,
) -> Speech:
    """POST /v1/audio/speech through the openai SDK, streamed as pcm. ``max_retries``: the
    SDK's own (it honours Retry-After); ``on_status`` sees every HTTP status it gets."""
    from openai import DefaultHttpxClient, OpenAI

    hooks = {"response": [lambda r: on_status(r.status_code)]} if on_status else {}
    client = OpenAI(
        base_url=base_url,
        api_key="not-needed",
        timeout=timeout,
        max_retries=max_retries,
        http_client=DefaultHttpxClient(event_hooks=hooks),
    )
    start = time.monotonic()
    first = None
    chunks = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice=voice, input=text, response_format="pcm"
    ) as response:
        served_by = response.headers.get("x-served-by", "")
        for chunk in response.iter_bytes():
            if chunk and first is None:
                first = time.monotonic() - start
            chunks.append(chunk)
    return Speech(b"".join(chunks), first or 0.0, time.monotonic() - start, served_by)


async def wyoming_speech(
    host: str, port: int, text: str, voice: str = "af_heart", timeout: float = 300
) -> Speech:
    """One synthesize on its own connection; the audio up to audio-stop."""
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.error import Error
    from wyoming.tts import Synthesize, SynthesizeVoice

    start = time.monotonic()
    first = None
    pcm = bytearray()
    async with AsyncTcpClient(host, port) as client:
        client_port = client._writer.get_extra_info("sockname")[1]
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(voice)).event())
        while True:
            event = await asyncio.wait_for(client.read_event(), timeout)
            if event is None:
                raise ConnectionError("connection closed before audio-stop")
            if Error.is_type(event.type):
                raise RuntimeError(f"wyoming error: {Error.from_event(event).text}")
            if AudioChunk.is_type(event.type):
                if first is None:
                    first = time.monotonic() - start
                pcm += AudioChunk.from_event(event).audio
            elif AudioStop.is_type(event.type):
                break
    return Speech(bytes(pcm), first or 0.0, time.monotonic() - start, client_port=client_port)
