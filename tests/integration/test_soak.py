"""A bounded soak on the real model: Wyoming and HTTP clients loop on loopback for
FASTKOKORO_SOAK_SECONDS (60 by default), about a quarter of them hanging up mid-stream.

Nothing may fail but the hang-ups we cause (HTTP clients may be refused as busy, with a
Retry-After they honour, when the machine is saturated; Home Assistant's never are);
memory (VmRSS of this process, which runs the daemon) may grow less than 10% after a
warm-up; and every stream and queue is empty at the end. The report is printed, and
written as JSON to $FASTKOKORO_SOAK_REPORT if set.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from openai import APIStatusError, AsyncOpenAI
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.support.daemon import wait_idle

pytestmark = pytest.mark.integration

SOAK_SECONDS = float(os.environ.get("FASTKOKORO_SOAK_SECONDS", "60"))
WARMUP_SECONDS = min(30.0, SOAK_SECONDS / 4)  # part of SOAK_SECONDS; RSS is measured after
REQUEST_TIMEOUT = 180.0  # one request; generous: 2 shared cores, several clients at once
MAX_RSS_GROWTH = 0.10
DISCONNECT_EVERY = 4  # every 4th request of each client hangs up after its first audio
TEXTS = (
    "Good morning.",
    "The kitchen light is on.",
    "It is twenty one degrees outside.",
    "Your timer has finished.",
    "The front door is locked, and the alarm is set.",
    "Turning off the living room lamp now.",
)
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MAGIC = {
    "mp3": (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"),
    "opus": (b"OggS",),
    "aac": (b"\xff\xf1", b"\xff\xf9"),
    "flac": (b"fLaC",),
    "wav": (b"RIFF",),
    "pcm": (b"",),
}


class Unexpected(Exception):
    """A request that ended in a way the soak does not allow; str() is its kind."""


class Refused(Exception):
    """An HTTP request refused as busy (503 + Retry-After): the admission's answer to a
    saturated machine, allowed for bulk clients, which come back after Retry-After."""

    def __init__(self, retry_after: str | None) -> None:
        super().__init__(retry_after)
        assert retry_after is not None and int(retry_after) >= 1, retry_after
        self.retry_after = int(retry_after)


@dataclass
class Tally:
    served: Counter[str] = field(default_factory=Counter)  # completed, by client
    disconnects: Counter[str] = field(default_factory=Counter)  # hang-ups we caused
    errors: Counter[str] = field(default_factory=Counter)  # anything else, by kind
    refused: Counter[str] = field(default_factory=Counter)  # HTTP 503 + Retry-After
    examples: dict[str, str] = field(default_factory=dict)


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


# --- one request per client kind: True when it completed, False when we hung up ----------


async def wyoming_once(port: int, text: str, hang_up: bool, streaming: bool) -> bool:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        if streaming:
            words = text.split()
            await client.write_event(SynthesizeStart().event())
            for part in (words[: len(words) // 2], words[len(words) // 2 :]):
                if part:
                    await client.write_event(SynthesizeChunk(text=" ".join(part) + " ").event())
            await client.write_event(SynthesizeStop().event())
        else:
            await client.write_event(Synthesize(text=text).event())
        end = "synthesize-stopped" if streaming else "audio-stop"
        audio = 0
        while True:
            event = await client.read_event()
            if event is None:
                raise Unexpected("wyoming: closed by the server")
            if event.type == "error":
                raise Unexpected(f"wyoming: error {event.data.get('code')}")
            if event.type == "audio-chunk":
                audio += len(event.payload or b"")
                if hang_up:
                    return False  # leaving the context manager closes the socket
            if event.type == end:
                if audio == 0:
                    raise Unexpected("wyoming: no audio")
                return True


async def aiohttp_once(
    http: aiohttp.ClientSession, base: str, text: str, hang_up: bool, fmt: str, sse: bool
) -> bool:
    body = {"model": "tts-1", "input": text, "voice": "af_heart", "response_format": fmt}
    if sse:
        body["stream_format"] = "sse"
    async with http.post(f"{base}/v1/audio/speech", json=body) as r:
        if r.status == 503 and (await r.json())["error"]["code"] == "busy":
            raise Refused(r.headers.get("Retry-After"))
        if r.status != 200:
            raise Unexpected(f"http: {r.status}")
        if hang_up:
            await r.content.readany()
            r.close()
            return False
        data = await r.read()
    if sse:
        events = [
            json.loads(line[6:]) for line in data.decode().splitlines() if line.startswith("data: ")
        ]
        if not events or events[-1]["type"] != "speech.audio.done":
            raise Unexpected("http: sse without speech.audio.done")
        data = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    if len(data) < 100 or not data.startswith(MAGIC[fmt]):
        raise Unexpected(f"http: bad {fmt} body")
    return True


async def openai_once(client: AsyncOpenAI, text: str, hang_up: bool, fmt: str) -> bool:
    try:
        async with client.audio.speech.with_streaming_response.create(
            model="tts-1",
            voice="alloy",
            input=text,
            response_format=fmt,  # type: ignore[arg-type]
        ) as response:
            size = 0
            async for chunk in response.iter_bytes():
                size += len(chunk)
                if hang_up:
                    return False  # leaving the context manager closes the connection
    except APIStatusError as err:
        if err.status_code == 503:
            raise Refused(err.response.headers.get("Retry-After")) from err
        raise
    if size < 100:
        raise Unexpected(f"openai: {size} bytes of {fmt}")
    return True


# --- the soak ----------------------------------------------------------------------------


async def sample_rss(samples: list[int], every: float = 10.0) -> None:
    """VmRSS every ``every`` seconds, for the report: a leak shows as a steady climb."""
    while True:
        samples.append(vm_rss_kb())
        await asyncio.sleep(every)


Request = Callable[[int, bool], Awaitable[bool]]  # (iteration, hang_up) -> completed


async def loop_client(name: str, request: Request, tally: Tally, until: float) -> None:
    i = 0
    while time.monotonic() < until:
        hang_up = i % DISCONNECT_EVERY == DISCONNECT_EVERY - 1
        try:
            done = await asyncio.wait_for(request(i, hang_up), REQUEST_TIMEOUT)
        except Refused as err:
            tally.refused[name] += 1
            await asyncio.sleep(min(err.retry_after, max(0.0, until - time.monotonic())))
        except Unexpected as err:
            tally.errors[str(err)] += 1
        except Exception as err:  # noqa: BLE001 - tallied as its type, shown in the report
            kind = f"{name}: {type(err).__name__}"
            tally.errors[kind] += 1
            tally.examples.setdefault(kind, repr(err)[:300])
        else:
            (tally.served if done else tally.disconnects)[name] += 1
        i += 1


async def test_soak(daemon, engine, caplog) -> None:
    caplog.set_level(logging.WARNING)
    base = f"http://127.0.0.1:{daemon.http.port}"
    wport = daemon.wyoming.port
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        AsyncOpenAI(
            base_url=f"{base}/v1", api_key="unused", timeout=REQUEST_TIMEOUT, max_retries=0
        ) as sdk,
    ):
        clients: dict[str, Request] = {
            "wyoming": lambda i, h: wyoming_once(wport, TEXTS[i % len(TEXTS)], h, False),
            "wyoming-streaming": lambda i, h: wyoming_once(
                wport, TEXTS[(i + 1) % len(TEXTS)], h, True
            ),
            "aiohttp": lambda i, h: aiohttp_once(
                http, base, TEXTS[(i + 2) % len(TEXTS)], h, FORMATS[i % len(FORMATS)], i % 5 == 2
            ),
            "openai": lambda i, h: openai_once(
                sdk, TEXTS[(i + 3) % len(TEXTS)], h, FORMATS[(i + 3) % len(FORMATS)]
            ),
        }

        # Warm-up: the same mix for the first quarter (at most 30 s), so encoders, G2P
        # caches, the runtime's buffers and the allocator's per-thread arenas exist before
        # the first RSS reading.
        tally = Tally()
        started = time.monotonic()
        await asyncio.gather(
            *(loop_client(name, r, tally, started + WARMUP_SECONDS) for name, r in clients.items())
        )
        await wait_idle(engine)
        gc.collect()
        rss_start = vm_rss_kb()
        warm_served = sum(tally.served.values())

        until = started + SOAK_SECONDS
        samples: list[int] = []
        sampler = asyncio.create_task(sample_rss(samples))
        try:
            await asyncio.gather(
                *(loop_client(name, request, tally, until) for name, request in clients.items())
            )
        finally:
            sampler.cancel()
        elapsed = time.monotonic() - started

    await wait_idle(engine)
    gc.collect()
    rss_end = vm_rss_kb()
    growth = (rss_end - rss_start) / rss_start
    server_errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.name.startswith("fastkokoro_wyoming")
    ]
    report = {
        "seconds": round(elapsed, 1),
        "warmup_seconds": WARMUP_SECONDS,
        "requests_served": sum(tally.served.values()),
        "requests_served_after_warmup": sum(tally.served.values()) - warm_served,
        "served_by_client": dict(tally.served),
        "disconnects_by_client": dict(tally.disconnects),
        "refused_by_client": dict(tally.refused),
        "errors_by_kind": {
            "disconnect (expected)": sum(tally.disconnects.values()),
            **tally.errors,
        },
        "error_examples": tally.examples,
        "server_error_logs": len(server_errors),
        "rss_start_kb": rss_start,
        "rss_end_kb": rss_end,
        "rss_growth_pct": round(100 * growth, 2),
        "rss_every_10s_kb": samples,
        "active_streams_end": engine.active_streams,
        "queued_end": engine.scheduler.queued,
    }
    print("soak report:", json.dumps(report, indent=2))
    if os.environ.get("FASTKOKORO_SOAK_REPORT"):
        Path(os.environ["FASTKOKORO_SOAK_REPORT"]).write_text(json.dumps(report, indent=2) + "\n")

    assert not tally.errors, f"unexpected errors: {dict(tally.errors)} {tally.examples}"
    assert not server_errors, server_errors[:5]
    assert all(tally.served[name] > 0 for name in clients), dict(tally.served)
    assert sum(tally.disconnects.values()) > 0
    assert growth < MAX_RSS_GROWTH, f"RSS {rss_start} -> {rss_end} kB (+{100 * growth:.1f}%)"
    assert engine.active_streams == 0 and engine.scheduler.queued == 0
