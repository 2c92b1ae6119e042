"""Admission on the real daemon: when the machine is saturated, bulk HTTP requests are
refused first with a Retry-After from the queue, while Home Assistant's (Wyoming)
requests are queued and all answered.

Real daemon over the tiny classic graph (test_limits.py's helpers); each model call
sleeps, so the queue's predicted wait is what the test sets up, not the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
import pytest
from wyoming.tts import Synthesize

from fastkokoro_wyoming.engine.serving.admission import WaitEstimate
from tests.support.daemon import wait_idle
from tests.support.tiny_daemon import (
    GOOD,
    THREE,
    HookedSession,
    assert_error_body,
    assert_serves,
    client_timeout,
    derive,
    load_tiny_engine,
    serving,
    sleeping,
    streamed,
    types,
    url,
    wyoming_request,
)

pytestmark = pytest.mark.integration

CALL_S = 0.3  # each model call sleeps this long


@pytest.fixture(scope="module")
async def tiny(kokoro_assets, tmp_path_factory):
    engine = await load_tiny_engine(tmp_path_factory.mktemp("admission"), kokoro_assets[1])
    yield engine
    engine.close()


async def http_status(daemon, text: str) -> tuple[int, str | None, bytes]:
    body = {**GOOD, "input": text, "response_format": "pcm"}
    async with aiohttp.ClientSession() as http:
        async with http.post(url(daemon), json=body, timeout=client_timeout()) as r:
            return r.status, r.headers.get("Retry-After"), await r.read()


async def test_saturated_bulk_is_refused_first_while_wyoming_is_queued(tiny) -> None:
    engine = derive(
        tiny,
        session=HookedSession(tiny.session, sleeping(CALL_S)),
        bulk_max_wait_s=2 * CALL_S,
        interactive_max_wait_s=120.0,
    )
    async with serving(engine) as daemon:
        # one request alone teaches the engine what a first audio costs here
        assert (await http_status(daemon, "Hello there."))[0] == 200
        assert engine.admission.first_audio_seconds >= CALL_S * 0.9
        http = [asyncio.create_task(http_status(daemon, THREE)) for _ in range(8)]
        await asyncio.sleep(0.05)
        wyoming = [
            asyncio.create_task(wyoming_request(daemon, Synthesize(text=f"Reply {i}.").event()))
            for i in range(3)
        ] + [
            asyncio.create_task(
                wyoming_request(daemon, *streamed("Turn it on. Done."), end="synthesize-stopped")
            )
        ]
        http_results = await asyncio.gather(*http)
        wyoming_results = await asyncio.gather(*wyoming)
        served = [r for r in http_results if r[0] == 200]
        refused = [r for r in http_results if r[0] == 503]
        assert served and refused and len(served) + len(refused) == len(http_results)
        for _, retry_after, body in refused:
            assert int(retry_after) >= 1  # type: ignore[arg-type]
            error = assert_error_body(json.loads(body), code="busy")
            assert "bulk" in error["message"] and "would wait" in error["message"]
        for status, _, audio in served:
            assert status == 200 and len(audio) > 0
        for events in wyoming_results:  # every Home Assistant request got its audio
            assert "error" not in types(events) and "audio-chunk" in types(events)
        assert engine.admission.refused["interactive"] == 0
        assert engine.admission.refused["bulk"] == len(refused)
        async with aiohttp.ClientSession() as client:
            async with client.get(url(daemon, "/metrics")) as r:
                exposition = await r.text()
        assert f'fastkokoro_refused_total{{kind="bulk"}} {float(len(refused))}' in exposition
        assert 'fastkokoro_predicted_wait_seconds{kind="interactive"}' in exposition
        await wait_idle(engine)
        await assert_serves(daemon)  # and once the queue drains, bulk is admitted again


async def test_retry_after_grows_with_the_queue(tiny) -> None:
    """Retry-After is the predicted wait, not a constant: a deeper queue, a longer one."""
    engine = derive(
        tiny,
        session=HookedSession(tiny.session, sleeping(CALL_S)),
        bulk_max_wait_s=0.0,
        interactive_max_wait_s=120.0,
    )
    async with serving(engine) as daemon:
        assert (await http_status(daemon, "Hello there."))[0] == 200
        waits = []
        for backlog in (2, 8):
            queued = [
                asyncio.create_task(wyoming_request(daemon, Synthesize(text=THREE).event()))
                for _ in range(backlog)
            ]
            await asyncio.sleep(0.1)
            status, retry_after, _ = await http_status(daemon, "Hello there.")
            assert status == 503
            waits.append(int(retry_after))  # type: ignore[arg-type]
            await asyncio.gather(*queued)
            await wait_idle(engine)
        assert waits[1] > waits[0] >= 1


async def test_an_admitted_bulk_request_keeps_its_promise_under_interactive_saturation(
    tiny, monkeypatch
) -> None:
    """Five Home Assistant clients keep the one worker busy with interactive work while
    an HTTP request is admitted. Before the promise, every interactive job that arrived
    in the next 60 s (interactive_lead_s) went first: the request's first audio came
    after the whole load. Now interactive work that arrives after the moment its first
    job must start no longer passes it. Checked by model-call order, not wall time:
    the interactive calls run between its admission and its first call take no more
    worker time than it was promised (each call takes CALL_S)."""
    call_s = 0.1
    heart = tiny.voice_store.resolve("af_heart")  # Wyoming's voice; HTTP asks for another
    calls: list[str] = []

    def hook(ids: list[int], style: np.ndarray) -> None:
        ours = np.array_equal(style, heart.style_for(len(ids)))
        calls.append("interactive" if ours else "bulk")
        time.sleep(call_s)

    engine = derive(
        tiny,
        session=HookedSession(tiny.session, hook),
        bulk_max_wait_s=5.0,
        interactive_max_wait_s=120.0,
        bulk_realtime_share=100.0,  # the real-time gate is another test's
    )
    promises: list[tuple[int, float]] = []  # (calls made by then, promise) per bulk admission
    check = engine.admission.check

    def recording(active: int, interactive: bool, *, admitted: bool = False) -> WaitEstimate:
        wait = check(active, interactive, admitted=admitted)
        if not interactive:
            promises.append((len(calls), wait.promise))
        return wait

    monkeypatch.setattr(engine.admission, "check", recording)
    # Five clients back to back fill the worker: counting the interactive streams present,
    # admission refuses bulk work at the door (tests/unit/test_admission.py). This test is
    # about the order once admitted, so it sees only the measured rate, as before one is.
    monkeypatch.setattr(engine.admission, "interactive_streams", lambda: 0)
    async with serving(engine) as daemon:
        await wyoming_request(daemon, Synthesize(text="Warm up.").event())  # G2P loaded
        stop = time.monotonic() + 12.0

        async def home_assistant() -> int:
            answered = 0
            while time.monotonic() < stop:
                text = Synthesize(text="Turn on the kitchen light. It is on now.").event()
                events = await wyoming_request(daemon, text)
                assert "error" not in types(events) and "audio-chunk" in types(events)
                answered += 1
            return answered

        clients = [asyncio.create_task(home_assistant()) for _ in range(5)]
        try:
            for _ in range(50):  # until the queue is full of interactive work
                await asyncio.sleep(0.1)
                if engine.scheduler.queued >= 4:
                    break
            assert engine.scheduler.queued >= 4
            body = {**GOOD, "input": THREE, "voice": "am_adam", "response_format": "pcm"}
            async with aiohttp.ClientSession() as http:
                for _ in range(3):  # refused: back after Retry-After, as the SDK does
                    async with http.post(url(daemon), json=body, timeout=client_timeout()) as r:
                        if r.status == 503:
                            await asyncio.sleep(float(r.headers["Retry-After"]))
                            continue
                        assert r.status == 200, await r.text()
                        assert len(await r.read()) > 0
                        break
            answered = await asyncio.gather(*clients)
        finally:
            for client in clients:
                client.cancel()
        await wait_idle(engine)
    assert sum(answered) >= 10 and engine.admission.refused["interactive"] == 0
    ((admitted_at, promise),) = promises
    first_bulk = calls.index("bulk", admitted_at)
    passed_it = calls[admitted_at:first_bulk].count("interactive")
    # the call running at the admission may finish first too
    assert (passed_it - 1) * call_s <= promise, (passed_it, promise)
    # and the load was real: the interactive calls after it would have broken the promise
    assert calls[first_bulk:].count("interactive") * call_s > promise, (promise, calls)
