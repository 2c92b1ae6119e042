"""OpenAI-compatible HTTP front end: real server, real clients.

Over a real Engine on the tiny graph (tests/support/tiny_engine.py) wherever a test only
needs the engine to answer, so every refusal is the engine's own validation; over the
fake (tests/support/fakes.py: the same validation, sine audio) where a test counts
seconds of audio, records requests, or makes the engine slow or fail."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastkokoro_wyoming.audio import FORMATS
from fastkokoro_wyoming.config import OPENAI_VOICE_MAP, HttpConfig
from fastkokoro_wyoming.engine.errors import Busy, SynthesisFailed
from fastkokoro_wyoming.engine.types import SynthesisRequest
from fastkokoro_wyoming.http_api.app import HttpService, start_http_server
from fastkokoro_wyoming.http_api.metrics import Metrics
from fastkokoro_wyoming.http_api.params import DEFAULT_VOICE_MAP, map_voice, merge_voice_map
from tests.support.audio import decode
from tests.support.fakes import FakeEngine
from tests.support.tiny_engine import tiny_engine

TIMEOUT = 10
GOOD = {"model": "tts-1", "input": "Hello there. How are you.", "voice": "af_heart"}


def http_config(**overrides) -> HttpConfig:
    """The real HttpConfig, on loopback and any free port, with a small body limit."""
    base = {
        "host": "127.0.0.1",
        "port": 0,
        "cors_origins": (),
        "voice_map": {"alloy": "bf_emma"},
        "max_body_bytes": 64 * 1024,
    }
    return HttpConfig(**{**base, **overrides})


class TrackingEngine(FakeEngine):
    """Records how far synthesis got; optionally waits on ``gate`` after each chunk."""

    def __init__(
        self, gate: asyncio.Event | None = None, fail_after: int | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.fail_after = fail_after
        self.yielded = 0
        self.finished = False
        self.closed = asyncio.Event()

    async def synthesize(self, req: SynthesisRequest) -> AsyncIterator[np.ndarray]:
        try:
            async for n, chunk in aiter_enumerate(super().synthesize(req)):
                if self.fail_after is not None and n >= self.fail_after:
                    raise SynthesisFailed("boom")
                yield chunk
                self.yielded += 1
                if self.gate is not None:
                    await self.gate.wait()
            self.finished = True
        finally:
            self.closed.set()


async def aiter_enumerate(items: AsyncIterator) -> AsyncIterator[tuple[int, object]]:
    n = 0
    async for item in items:
        yield n, item
        n += 1


@asynccontextmanager
async def serve(engine=None, **overrides) -> AsyncIterator[tuple[HttpService, str, object]]:
    """The HTTP front end over ``engine``, else over a real Engine on the tiny graph."""
    if engine is None:
        with tiny_engine() as real:
            async with serve(real, **overrides) as served:
                yield served
        return
    service = await start_http_server(engine, http_config(**overrides), Metrics())
    try:
        yield service, f"http://127.0.0.1:{service.port}", engine
    finally:
        await service.stop()


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, object, aiohttp.ClientSession]]:
    """Over a real Engine on the tiny graph."""
    async with serve() as (_, base, engine), aiohttp.ClientSession() as session:
        yield base, engine, session


@pytest.fixture
async def fake_server() -> AsyncIterator[tuple[str, FakeEngine, aiohttp.ClientSession]]:
    """Over the fake: 0.25 s of audio per sentence, every request recorded."""
    engine = FakeEngine()
    async with serve(engine) as (_, base, _), aiohttp.ClientSession() as session:
        yield base, engine, session


def sdk(base: str, key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=TIMEOUT)


async def post(session: aiohttp.ClientSession, base: str, body, **kw) -> tuple[int, dict, bytes]:
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    async with session.post(f"{base}/v1/audio/speech", data=data, timeout=TIMEOUT, **kw) as r:
        return r.status, dict(r.headers), await r.read()


def assert_error(status: int, raw: bytes, want_status: int, param, code=None) -> dict:
    assert status == want_status, raw
    err = json.loads(raw)["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and err["message"]
    assert err["type"] == ("server_error" if want_status >= 500 else "invalid_request_error")
    if code is not None:
        assert err["code"] == code
    assert b"Traceback" not in raw
    return err


# --- audio ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_sdk_every_format_decodes(fmt: str) -> None:
    engine = FakeEngine()
    async with serve(engine) as (_, base, _):
        client = sdk(base)
        resp = await client.audio.speech.create(
            model="tts-1", voice="af_heart", input="One. Two.", response_format=fmt
        )
        await client.close()
    assert resp.response.headers["content-disposition"] == f"attachment; filename=speech.{fmt}"
    rate, channels, seconds = decode(resp.content, fmt)
    assert channels == 1 and rate == (48_000 if fmt == "opus" else 24_000)
    assert 0.45 <= seconds <= 0.6
    assert engine.requests[-1].text == "One. Two."


async def test_sdk_streaming_response_default_mp3() -> None:
    async with serve(FakeEngine()) as (_, base, _):
        client = sdk(base)
        async with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="alloy", input="A. B. C.", instructions="cheerful"
        ) as resp:
            assert resp.headers["content-type"] == "audio/mpeg"
            assert resp.headers["transfer-encoding"] == "chunked"
            assert resp.headers["x-accel-buffering"] == "no"
            data = b"".join([c async for c in resp.iter_bytes()])
        await client.close()
    assert 0.7 <= decode(data, "mp3")[2] <= 0.85


async def test_bytes_arrive_before_synthesis_ends() -> None:
    gate = asyncio.Event()
    engine = TrackingEngine(gate=gate)
    async with serve(engine) as (_, base, _), aiohttp.ClientSession() as session:
        body = {**GOOD, "input": "One. Two. Three.", "response_format": "wav"}
        async with session.post(f"{base}/v1/audio/speech", json=body, timeout=TIMEOUT) as r:
            first = await asyncio.wait_for(r.content.readany(), TIMEOUT)
            assert first[:4] == b"RIFF" and len(first) > 44
            assert engine.yielded == 1 and not engine.finished
            async with session.get(f"{base}/health", timeout=2) as h:  # loop stays free
                assert h.status == 200
            gate.set()
            rest = await r.read()
    assert decode(first + rest, "wav")[2] == pytest.approx(0.75, abs=0.01)


async def test_client_disconnect_stops_synthesis() -> None:
    gate = asyncio.Event()
    engine = TrackingEngine(gate=gate, delay=0.02)
    metrics = Metrics()
    service = await start_http_server(engine, http_config(), metrics)
    try:
        async with aiohttp.ClientSession() as session:
            body = {**GOOD, "input": "x. " * 200, "response_format": "pcm"}
            url = f"http://127.0.0.1:{service.port}/v1/audio/speech"
            r = await session.post(url, json=body, timeout=TIMEOUT)
            await asyncio.wait_for(r.content.readany(), TIMEOUT)
            assert metrics.active_streams == 1
            r.close()
        await asyncio.sleep(0.1)
        gate.set()
        await asyncio.wait_for(engine.closed.wait(), TIMEOUT)
        assert not engine.finished and engine.yielded < 200
        for _ in range(50):
            if metrics.active_streams == 0:
                break
            await asyncio.sleep(0.02)
        assert metrics.active_streams == 0
    finally:
        await service.stop()


async def test_stream_false_has_content_length(fake_server) -> None:
    base, _, session = fake_server
    status, headers, raw = await post(
        session, base, {**GOOD, "stream": False, "response_format": "flac"}
    )
    assert status == 200 and int(headers["Content-Length"]) == len(raw)
    assert "Transfer-Encoding" not in headers
    assert decode(raw, "flac")[2] == pytest.approx(0.5, abs=0.01)


async def test_sse_events(fake_server) -> None:
    base, _, session = fake_server
    status, headers, raw = await post(session, base, {**GOOD, "stream_format": "sse"})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        events.append(event)
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    done = events[-1]
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert 0.45 <= decode(audio, "mp3")[2] <= 0.6


async def test_mid_stream_failure_truncates_audio_and_reports_in_sse() -> None:
    engine = TrackingEngine(fail_after=1)
    async with serve(engine) as (_, base, _), aiohttp.ClientSession() as session:
        body = {**GOOD, "input": "One. Two. Three.", "response_format": "pcm"}
        with pytest.raises(aiohttp.ClientPayloadError):
            await post(session, base, body)
        status, _, raw = await post(session, base, {**body, "stream_format": "sse"})
        assert status == 200
        last = json.loads(raw.decode().strip().split("\n\n")[-1].split("data: ", 1)[1])
        assert last["type"] == "error" and last["error"]["code"] == "synthesis_failed"
        status, _, raw = await post(session, base, {**GOOD, "input": "Hi."})  # still serving
        assert status == 200 and raw


# --- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        ([1, 2], None, "invalid_type"),
        ({"model": "tts-1", "voice": "af_heart"}, "input", "missing_required_parameter"),
        ({**GOOD, "input": 42}, "input", "invalid_type"),
        ({**GOOD, "input": "   "}, "input", "empty_text"),
        ({**GOOD, "input": "a" * 4097}, "input", "string_above_max_length"),
        ({**GOOD, "model": "whisper-1"}, "model", "model_not_found"),
        ({**GOOD, "model": 3}, "model", "invalid_type"),
        ({**GOOD, "voice": 123}, "voice", "invalid_type"),
        ({**GOOD, "voice": {"name": "x"}}, "voice", "invalid_type"),
        ({**GOOD, "voice": "zz_nobody"}, "voice", "unknown_voice"),
        ({**GOOD, "response_format": "ogg"}, "response_format", "invalid_value"),
        ({**GOOD, "speed": 5}, "speed", "invalid_value"),
        ({**GOOD, "speed": 0.1}, "speed", "invalid_value"),
        ({**GOOD, "speed": "fast"}, "speed", "invalid_type"),
        ({**GOOD, "speed": True}, "speed", "invalid_type"),
        ({**GOOD, "stream_format": "ws"}, "stream_format", "invalid_value"),
        ({**GOOD, "stream": "yes"}, "stream", "invalid_type"),
        (
            {**GOOD, "normalization_options": {"normalize": "no"}},
            "normalization_options.normalize",
            "invalid_type",
        ),
    ],
)
async def test_bad_request_then_good_request(server, body, param, code) -> None:
    base, _, session = server
    status, headers, raw = await post(session, base, body)
    assert headers["Content-Type"].startswith("application/json")
    assert_error(status, raw, 400, param, code)
    status, _, raw = await post(session, base, GOOD)
    assert status == 200 and raw


async def test_sdk_sees_openai_errors(server) -> None:
    base, _, _ = server
    client = sdk(base)
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(model="whisper-1", voice="alloy", input="Hi.")
    assert info.value.code == "model_not_found" and info.value.param == "model"
    with pytest.raises(openai.BadRequestError) as info:
        await client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    assert info.value.param == "voice" and "nobody" in info.value.message
    ok = await client.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
    assert ok.content
    await client.close()


async def test_http_level_errors_are_json(server) -> None:
    base, _, session = server
    status, _, raw = await post(session, base, json.dumps({**GOOD, "input": "a" * 70_000}))
    assert_error(status, raw, 413, None, "request_too_large")
    async with session.get(f"{base}/v1/nope") as r:
        assert_error(r.status, await r.read(), 404, None, "not_found")
    async with session.get(f"{base}/v1/audio/speech") as r:
        assert_error(r.status, await r.read(), 405, None, "method_not_allowed")
        assert "POST" in r.headers["Allow"]
    status, _, raw = await post(session, base, GOOD)
    assert status == 200 and raw


class ExplodingEngine(FakeEngine):
    def __init__(self, error: Exception, where: str) -> None:
        super().__init__()
        self.error, self.where = error, where

    def prepare(self, req):
        if self.where == "prepare":
            raise self.error
        return super().prepare(req)

    async def synthesize(self, req):
        if self.where == "synthesize":
            raise self.error
        async for chunk in super().synthesize(req):
            yield chunk


@pytest.mark.parametrize(
    ("error", "where", "status", "code"),
    [
        (Busy("queue full"), "prepare", 503, "busy"),
        (Busy("queue full"), "synthesize", 503, "busy"),
        (SynthesisFailed("onnx fell over"), "synthesize", 500, "synthesis_failed"),
        (RuntimeError("secret detail"), "prepare", 500, "internal_error"),
    ],
)
async def test_engine_errors_before_headers(error, where, status, code, caplog) -> None:
    async with serve(ExplodingEngine(error, where)) as (_, base, _), aiohttp.ClientSession() as s:
        st, headers, raw = await post(s, base, GOOD)
    assert_error(st, raw, status, None, code)
    assert b"secret detail" not in raw
    if code == "busy":
        assert headers["Retry-After"] == "1"


async def test_health_lists_what_is_still_being_prepared() -> None:
    """The listeners open once the model can speak: /health is 200 from its first answer,
    and says what one-time work is still under way (none: an empty list)."""
    engine = FakeEngine()
    task = {"task": "Norm priors for af_heart", "done": 2, "total": 5, "eta_s": 3.0}
    engine.preparing = [task]
    async with serve(engine) as (_, base, _), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/health") as r:
            assert r.status == 200
            assert await r.json() == {"status": "ok", "model": "loaded", "preparing": [task]}
        status, _, _ = await post(session, base, GOOD)
        assert status == 200  # preparing never refuses a request
        engine.preparing = []
        async with session.get(f"{base}/health") as r:
            assert await r.json() == {"status": "ok", "model": "loaded", "preparing": []}


# --- auth and CORS ---------------------------------------------------------------------


async def test_api_key() -> None:
    async with serve(api_key="secret") as (_, base, _), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/health") as r:
            assert r.status == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"}):
            async with session.get(f"{base}/metrics", headers=headers) as r:
                assert_error(r.status, await r.read(), 401, None, "invalid_api_key")
        async with session.get(f"{base}/metrics", headers={"Authorization": "Bearer secret"}) as r:
            assert r.status == 200
        bad = sdk(base, "wrong")
        with pytest.raises(openai.AuthenticationError):
            await bad.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")
        await bad.close()
        good = sdk(base, "secret")
        assert (await good.audio.speech.create(model="tts-1", voice="alloy", input="Hi.")).content
        await good.close()


async def test_cors() -> None:
    origin = "http://ui.example"
    preflight = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    async with (
        serve(cors_origins=(origin,), api_key="k") as (_, base, _),
        aiohttp.ClientSession() as session,
    ):
        url = f"{base}/v1/audio/speech"
        async with session.options(url, headers=preflight) as r:
            assert r.status == 204
            assert r.headers["Access-Control-Allow-Origin"] == origin
            assert "POST" in r.headers["Access-Control-Allow-Methods"]
            assert "authorization" in r.headers["Access-Control-Allow-Headers"]
        async with session.options(url, headers={**preflight, "Origin": "http://evil"}) as r:
            assert r.status == 403
        status, headers, _ = await post(
            session, base, GOOD, headers={"Origin": origin, "Authorization": "Bearer k"}
        )
        assert status == 200 and headers["Access-Control-Allow-Origin"] == origin
        async with session.get(f"{base}/metrics", headers={"Origin": origin}) as r:
            assert r.status == 401 and r.headers["Access-Control-Allow-Origin"] == origin
    async with serve(cors_origins=("*",)) as (_, base, _), aiohttp.ClientSession() as session:
        async with session.options(f"{base}/v1/models", headers=preflight) as r:
            assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


# --- catalog, metrics, spec, voices ------------------------------------------------------


async def test_models_and_voices(server) -> None:
    base, _, session = server
    client = sdk(base)
    ids = [m.id async for m in client.models.list()]
    assert ids[0] == "kokoro" and {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"} <= set(ids)
    assert (await client.models.retrieve("tts-1")).owned_by == "fastkokoro-wyoming"
    with pytest.raises(openai.NotFoundError):
        await client.models.retrieve("whisper-1")
    await client.close()
    async with session.get(f"{base}/v1/audio/models") as r:
        assert {"id": "kokoro"} in (await r.json())["models"]
    async with session.get(f"{base}/v1/audio/voices") as r:
        voices = (await r.json())["voices"]
    assert voices[0] == {
        "id": "af_heart",
        "name": "af_heart",
        "language": "en-US",
        "lang_code": "a",
        "gender": "female",
    }
    assert len(voices) == 3
    async with session.get(f"{base}/v1/audio/voices?legacy=true") as r:
        assert (await r.json())["voices"] == ["af_heart", "bf_emma", "jf_alpha"]


async def test_request_fields_reach_engine(fake_server, caplog) -> None:
    base, engine, session = fake_server
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming.http_api.speech")
    bodies = [
        {**GOOD, "voice": "alloy", "instructions": "whisper"},
        {
            **GOOD,
            "voice": {"id": "bf_emma"},
            "lang_code": "b",
            "speed": 1.5,
            "normalization_options": {"normalize": False},
            "instructions": "shout",
            "extra": 1,
        },
        {"input": "Hi.", "lang": "j"},
    ]
    for body in bodies:
        status, _, raw = await post(session, base, body)
        assert status == 200, raw
    assert engine.requests[-3:] == [
        # no speed: None, so a preset's speed can apply (the engine's rule)
        SynthesisRequest("Hello there. How are you.", "bf_emma", None, None, True),
        SynthesisRequest("Hello there. How are you.", "bf_emma", "b", 1.5, False),
        SynthesisRequest("Hi.", None, "j", None, True),  # the engine picks a ja voice
    ]
    assert sum("instructions" in rec.getMessage() for rec in caplog.records) == 1


def test_map_voice_blends() -> None:
    vmap = merge_voice_map({"Nova": "bf_emma"})
    assert vmap["alloy"] == DEFAULT_VOICE_MAP["alloy"] and vmap["nova"] == "bf_emma"
    assert map_voice("alloy(2)+af_sky(1)", vmap) == "af_alloy(2)+af_sky(1)"
    assert map_voice("NOVA:0.7+shimmer:0.3", vmap) == "bf_emma:0.7+af_sky:0.3"
    assert map_voice("af_bella - echo", vmap) == "af_bella - am_echo"
    assert map_voice("af_bella:-0.3+onyx", vmap) == "af_bella:-0.3+am_onyx"
    assert map_voice("af_heart", vmap) == "af_heart"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_text() -> None:
    async with serve() as (_, base, engine), aiohttp.ClientSession() as session:
        await post(session, base, {**GOOD, "response_format": "wav"})
        await post(session, base, {**GOOD, "speed": 9})
        async with session.get(f"{base}/metrics") as r:
            assert r.headers["Content-Type"].startswith("text/plain")
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            text = await r.text()
    got = samples(text)
    assert got[("fastkokoro_requests_total", (("format", "wav"),))] == 1
    assert got[("fastkokoro_errors_total", (("code", "invalid_value"),))] == 1
    assert got[("fastkokoro_time_to_first_audio_seconds_count", ())] == 1
    assert got[("fastkokoro_real_time_factor_bucket", (("le", "+Inf"),))] == 1
    assert got[("fastkokoro_active_streams", ())] == 0
    assert engine.provider == "CPUExecutionProvider"  # the tiny graph's real session
    assert got[("fastkokoro_info", (("provider", "CPUExecutionProvider"),))] == 1
    assert "# TYPE fastkokoro_requests_total counter" in text
    assert "# TYPE fastkokoro_time_to_first_audio_seconds histogram" in text
    buckets = [labels[0][1] for name, labels in got if name.endswith("first_audio_seconds_bucket")]
    assert buckets[:3] == ["0.05", "0.1", "0.25"] and buckets[-1] == "+Inf"


def test_metrics_registries_are_per_instance() -> None:
    """Two apps in one process (as in these tests) never share or clash on metrics."""
    first, second = Metrics(), Metrics()
    first.observe_request("mp3")
    first.error("busy")
    assert samples(first.render())[("fastkokoro_requests_total", (("format", "mp3"),))] == 1
    other = samples(second.render())
    assert ("fastkokoro_requests_total", (("format", "mp3"),)) not in other
    assert ("fastkokoro_errors_total", (("code", "busy"),)) not in other
    first.stream_finished()  # never negative
    assert samples(first.render())[("fastkokoro_active_streams", ())] == 0


async def test_openapi_document(server) -> None:
    base, _, session = server
    async with session.get(f"{base}/openapi.json") as r:
        spec = json.loads(await r.read())
    assert spec["openapi"].startswith("3.1")
    assert {
        "/v1/audio/speech",
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/audio/models",
        "/v1/audio/voices",
        "/health",
        "/metrics",
        "/openapi.json",
    } <= set(spec["paths"])
    speech = spec["components"]["schemas"]["SpeechRequest"]["properties"]
    assert "4096" in speech["input"]["description"]  # the engine's default limit
    assert speech["response_format"]["enum"] == [*FORMATS, None]  # null: the default
    assert (speech["speed"]["minimum"], speech["speed"]["maximum"]) == (0.25, 4.0)
    assert "Error" in spec["components"]["schemas"]
    # No key configured: every operation is open, and no scheme is advertised.
    operations = [op for ops in spec["paths"].values() for op in ops.values()]
    assert all(op["security"] == [] for op in operations)
    assert "securitySchemes" not in spec["components"]


async def test_openapi_says_which_routes_need_the_key() -> None:
    """The spec's security follows auth_middleware: everything but /health and the
    catalogs (http.public_catalog, on by default) needs the key."""
    async with serve(api_key="k") as (_, base, _), aiohttp.ClientSession() as session:
        async with session.get(f"{base}/openapi.json", headers={"Authorization": "Bearer k"}) as r:
            spec = await r.json()
        assert spec["components"]["securitySchemes"]["bearer"] == {
            "type": "http",
            "scheme": "bearer",
        }
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                url = f"{base}{path.replace('{model_id}', 'kokoro')}"
                body = GOOD if method == "post" else None
                async with session.request(method, url, json=body) as r:
                    needs_key = r.status == 401
                assert op["security"] == ([{"bearer": []}] if needs_key else []), (path, r.status)
                protected = (
                    "/v1/audio/speech",
                    "/dev/captioned_speech",
                    "/dev/phonemize",
                    "/dev/generate_from_phonemes",
                    "/metrics",
                )
                assert needs_key == (path in protected), path


class PreparingEngine(FakeEngine):
    """prepare() returns a job object; synthesize() accepts only that object."""

    def __init__(self) -> None:
        super().__init__()
        self.prepared: list[object] = []
        self.synthesized: list[object] = []

    def prepare(self, req):
        job = ("prepared", super().prepare(req))
        self.prepared.append(job)
        return job

    async def synthesize(self, prepared):
        assert isinstance(prepared, tuple) and prepared[0] == "prepared", prepared
        self.synthesized.append(prepared)
        async for chunk in super().synthesize(prepared[1]):
            yield chunk


async def test_speech_synthesizes_what_prepare_returned() -> None:
    """One validation path: the handler hands the engine's prepared job to synthesize."""
    engine = PreparingEngine()
    async with serve(engine) as (_, base, _), aiohttp.ClientSession() as session:
        status, _, raw = await post(session, base, GOOD)
    assert status == 200 and raw
    assert engine.synthesized == [engine.prepared[0]]  # the very job prepare() returned
    assert engine.requests[-1].text == GOOD["input"]


async def test_http_config_defaults_work() -> None:
    """HttpConfig() as shipped (only host/port changed) serves OpenAI's defaults."""
    engine = FakeEngine()
    service = await start_http_server(engine, HttpConfig(host="127.0.0.1", port=0))
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{service.port}"
            status, headers, _ = await post(session, base, {"input": "Hi.", "voice": "coral"})
            assert status == 200 and headers["Content-Type"] == "audio/mpeg"
            status, _, raw = await post(session, base, {"input": "Hi."})
            assert status == 200 and raw
            status, _, raw = await post(session, base, {"input": "a" * 4097})
            err = assert_error(status, raw, 400, "input", "string_above_max_length")
            assert "4097" in err["message"] and "4096" in err["message"]
    finally:
        await service.stop()
    assert engine.requests[-2].voice == OPENAI_VOICE_MAP["coral"]
    assert engine.requests[-1].voice is None  # the engine picks its default voice
