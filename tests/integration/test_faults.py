"""Faults: bad startup input stops the real entry point with one clear line, and a fault
inside one request (an exception, a model call past the time limit) ends that request
with an error while every other request, and the daemon, carries on."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import yaml
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from tests.support.daemon import wait_idle
from tests.support.tiny_daemon import (
    GOOD,
    THREE,
    Gate,
    HookedSession,
    assert_error_body,
    assert_serves,
    derive,
    error_of,
    load_tiny_engine,
    passing,
    serving,
    streamed,
    types,
    url,
    wyoming_request,
)
from tests.support.tiny_models import build_classic_model

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT = 120.0  # a fault must stop startup; a daemon that serves instead hangs here
TIMEOUT = 30.0
BAD_VOICE = "am_puck"  # the voice whose model calls the injected fault targets


# --- startup faults: the real entry point as a subprocess ----------------------------------


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}


def serve_args(model: Path, voices: Path, *extra: str, config: Path | None = None) -> list[str]:
    return [
        sys.executable, "-m", "fastkokoro_wyoming",
        *(["-c", str(config), "serve"] if config else []),
        "--model", str(model), "--voices", str(voices),
        "--http-host", "127.0.0.1", "--http-port", "0",
        "--wyoming-host", "127.0.0.1", "--wyoming-port", "0", "--wyoming-zeroconf", "false",
        *extra,
    ]  # fmt: skip


def voices_with_a_bad_one(tmp: Path, voices: Path) -> Path:
    """The real voices (linked) plus one file of the wrong shape."""
    folder = tmp / "voices"
    folder.mkdir()
    for f in voices.glob("*.bin"):
        (folder / f.name).symlink_to(f)
    np.zeros(1000, np.float32).tofile(folder / "af_broken.bin")
    return folder


def write_yaml(tmp: Path, data: dict) -> Path:
    path = tmp / "fastkokoro.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


# Each case: (tmp, tiny model, real voices) -> (argv, extra environment), then what the last
# line of stderr must name.
Case = Callable[[Path, Path, Path], tuple[list[str], dict[str, str]]]
STARTUP_FAULTS: dict[str, tuple[Case, tuple[str, ...]]] = {
    "missing model": (
        lambda tmp, model, voices: (serve_args(tmp / "nope.onnx", voices), {}),
        ("engine.model.path", "nope.onnx", "does not exist"),
    ),
    "corrupt model": (
        lambda tmp, model, voices: (
            serve_args(_write(tmp / "corrupt.onnx", os.urandom(4096)), voices),
            {},
        ),
        ("model.path", "corrupt.onnx"),
    ),
    "voice of the wrong shape": (
        lambda tmp, model, voices: (serve_args(model, voices_with_a_bad_one(tmp, voices)), {}),
        ("voices", "af_broken", "1000 values"),
    ),
    "provider not installed": (
        lambda tmp, model, voices: (serve_args(model, voices, "--providers", "cuda"), {}),
        ("providers", "CUDAExecutionProvider", "onnxruntime-gpu", "fastkokoro-wyoming[gpu]"),
    ),
    "unknown key in YAML": (
        lambda tmp, model, voices: (
            serve_args(model, voices, config=write_yaml(tmp, {"http": {"prot": 1}})),
            {},
        ),
        ("http.prot", "unknown key", "fastkokoro.yaml"),
    ),
    "unknown variable": (
        lambda tmp, model, voices: (serve_args(model, voices), {"FASTKOKORO_HTTP_PROT": "1"}),
        ("$FASTKOKORO_HTTP_PROT", "unknown variable"),
    ),
    "unknown flag": (
        lambda tmp, model, voices: (serve_args(model, voices, "--http-prot", "1"), {}),
        ("unrecognized arguments", "--http-prot"),
    ),
    "bad value on the command line": (
        lambda tmp, model, voices: (serve_args(model, voices, "--http-port", "eighty"), {}),
        ("http.port", "command line", "'eighty'"),
    ),
    "impossible value in YAML": (
        lambda tmp, model, voices: (
            serve_args(
                model, voices, config=write_yaml(tmp, {"engine": {"limits": {"max_streams": 0}}})
            ),
            {},
        ),
        ("engine.limits.max_streams", ">= 1"),
    ),
    "bad value in a variable": (
        lambda tmp, model, voices: (
            serve_args(model, voices),
            {"FASTKOKORO_WYOMING_SAMPLES_PER_CHUNK": "5"},
        ),
        ("wyoming.samples_per_chunk", "64-48000"),
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_classic_model(tmp_path_factory.mktemp("faults") / "tiny_classic.onnx")


@pytest.mark.parametrize("fault", list(STARTUP_FAULTS))
def test_startup_fault_is_one_clear_line(fault, tiny_model, kokoro_assets, tmp_path) -> None:
    build, expected = STARTUP_FAULTS[fault]
    argv, env = build(tmp_path, tiny_model, kokoro_assets[1])
    proc = subprocess.run(
        argv,
        env={**clean_env(), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    stderr = proc.stderr.strip()
    lines = stderr.splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{stderr[-3000:]}"
    assert lines, "nothing on stderr"
    last = lines[-1]
    assert last.startswith("fastkokoro-wyoming: "), last
    for word in expected:
        assert word in last, f"{word!r} not in the last line: {last}"
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Ready:" not in stderr and proc.stdout == ""


@pytest.mark.parametrize("order", ["-c first", "-c last", "after serve"])
def test_config_file_with_other_flags(order, tiny_model, kokoro_assets, tmp_path) -> None:
    """README: defaults < YAML (-c) < variables < flags, so -c must combine with flags."""
    config = str(write_yaml(tmp_path, {"engine": {"limits": {"max_streams": 0}}}))
    flags = serve_args(tiny_model, kokoro_assets[1])[3:]
    argv = {
        "-c first": ["-c", config, *flags],
        "-c last": [*flags, "-c", config],
        "after serve": ["serve", "-c", config, *flags],
    }[order]
    proc = subprocess.run(
        [sys.executable, "-m", "fastkokoro_wyoming", *argv],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT,
    )
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "engine.limits.max_streams" in last, last


# --- faults inside one request -------------------------------------------------------------


@pytest.fixture(scope="module")
async def tiny(kokoro_assets, tmp_path_factory):
    engine = await load_tiny_engine(tmp_path_factory.mktemp("faults"), kokoro_assets[1])
    yield engine
    engine.close()


class InjectedFault(RuntimeError):
    """What the hooked session raises (no EngineError: an unexpected failure)."""


def fault_on_voice(tiny, voice: str, after: int = 0) -> Callable[[list[int], np.ndarray], None]:
    """Raise on ``voice``'s model calls once ``after`` of them went through."""
    table = tiny.voice_store.resolve(voice).styles
    seen = [0]

    def hook(ids: list[int], style: np.ndarray) -> None:
        if np.shares_memory(style, table):
            seen[0] += 1
            if seen[0] > after:
                raise InjectedFault(f"injected fault on {len(ids)} ids")

    return hook


async def _speech(http: aiohttp.ClientSession, daemon, **body) -> tuple[int, dict, bytes]:
    async with http.post(url(daemon), json={**GOOD, **body}, timeout=client_timeout()) as r:
        return r.status, dict(r.headers), await r.read()


def client_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=TIMEOUT)


async def test_exception_in_one_request_spares_the_others(tiny, caplog) -> None:
    """A model call that raises ends its own request (HTTP 500 JSON without a traceback;
    Wyoming error event + audio-stop) while good requests on both front ends, running at
    the same time, complete."""
    session = HookedSession(tiny.session, fault_on_voice(tiny, BAD_VOICE))
    engine = derive(tiny, session=session)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        results = await asyncio.gather(
            _speech(http, daemon, voice=BAD_VOICE),
            _speech(http, daemon, input=THREE, response_format="pcm"),
            wyoming_request(
                daemon, Synthesize(text="Hello.", voice=SynthesizeVoice(name=BAD_VOICE)).event()
            ),
            wyoming_request(daemon, Synthesize(text=THREE).event()),
            _speech(http, daemon, voice=BAD_VOICE, stream_format="sse"),
        )
        (bad_status, _, bad_body), (good_status, _, good_body), bad_w, good_w, sse = results
        assert bad_status == 500, bad_body[:300]
        error = assert_error_body(json.loads(bad_body), code="internal_error")
        assert error["type"] == "server_error" and "InjectedFault" not in bad_body.decode()
        assert good_status == 200 and len(good_body) > 1000
        assert error_of(bad_w)["code"] == "internal_error" and types(bad_w)[-1] == "audio-stop"
        assert "audio-chunk" in types(good_w) and "error" not in types(good_w)
        assert sse[0] == 500
        await wait_idle(engine)
        await assert_serves(daemon)
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is InjectedFault]
    assert logged, "the unexpected exception should be logged with its traceback"


CUT_TIMEOUT = aiohttp.ClientTimeout(total=5)  # a cut stream shows at once; a hang does not


async def test_exception_mid_stream_cuts_the_http_stream(tiny) -> None:
    """The fault hits a later segment, after the headers went out: the only honest signal
    left is a truncated chunked body, as for an EngineError there."""
    session = HookedSession(tiny.session, fault_on_voice(tiny, BAD_VOICE, after=1))
    engine = derive(tiny, session=session)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        body = {**GOOD, "voice": BAD_VOICE, "input": THREE, "response_format": "pcm"}
        async with http.post(url(daemon), json=body, timeout=CUT_TIMEOUT) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        await wait_idle(engine)
        session.hook = passing
        await assert_serves(daemon)


async def test_exception_mid_stream_ends_sse_with_an_error_event(tiny) -> None:
    session = HookedSession(tiny.session, fault_on_voice(tiny, BAD_VOICE, after=1))
    engine = derive(tiny, session=session)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        body = {**GOOD, "voice": BAD_VOICE, "input": THREE, "stream_format": "sse"}
        async with http.post(url(daemon), json=body, timeout=CUT_TIMEOUT) as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
            text = (await r.read()).decode()
        events = [e for e in text.split("\n\n") if e.strip()]
        assert "speech.audio.delta" in events[0] and "speech.audio.done" not in text
        assert '"type":"error"' in events[-1] and "HTTP/1.1" not in text
        await wait_idle(engine)


async def test_exception_mid_stream_on_wyoming(tiny) -> None:
    """Wyoming: the audio already sent, then error + audio-stop; other voices untouched."""
    session = HookedSession(tiny.session, fault_on_voice(tiny, BAD_VOICE, after=1))
    engine = derive(tiny, session=session)
    async with serving(engine) as daemon:
        got = await wyoming_request(
            daemon, Synthesize(text=THREE, voice=SynthesizeVoice(name=BAD_VOICE)).event()
        )
        assert types(got)[0] == "audio-start" and "audio-chunk" in types(got)
        assert error_of(got)["code"] == "internal_error" and types(got)[-1] == "audio-stop"

        session.hook = fault_on_voice(tiny, BAD_VOICE, after=1)
        got = await wyoming_request(
            daemon,
            SynthesizeStart(voice=SynthesizeVoice(name=BAD_VOICE)).event(),
            SynthesizeChunk(text=THREE).event(),
            SynthesizeStop().event(),
            end="synthesize-stopped",
        )
        assert "audio-chunk" in types(got) and error_of(got)["code"] == "internal_error"
        assert types(got)[-2:] == ["audio-stop", "synthesize-stopped"]
        got = await wyoming_request(daemon, *streamed(THREE), end="synthesize-stopped")
        assert "error" not in types(got) and "audio-chunk" in types(got)  # other voices: fine
        await wait_idle(engine)
        session.hook = passing
        await assert_serves(daemon)


# --- the per-request time limit ----------------------------------------------------------


async def test_request_past_max_request_seconds(tiny) -> None:
    """engine.limits.max_request_seconds=0.5 and model calls that never finish in time: HTTP
    gets 504 JSON (nothing was sent yet), Wyoming an error event with code
    synthesis_timeout and then the end event; the daemon serves afterwards."""
    session = HookedSession(tiny.session, Gate())
    engine = derive(tiny, session=session, max_request_seconds=0.5)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        status, headers, body = await _speech(http, daemon)
        assert status == 504, body[:300]
        assert headers.get("Content-Type", "").startswith("application/json")
        assert_error_body(json.loads(body), code="synthesis_timeout")
        await _release(engine, session)

        got = await wyoming_request(daemon, Synthesize(text="Too slow.").event())
        assert error_of(got)["code"] == "synthesis_timeout" and types(got)[-1] == "audio-stop"
        await _release(engine, session)
        got = await wyoming_request(daemon, *streamed("Too slow."), end="synthesize-stopped")
        assert error_of(got)["code"] == "synthesis_timeout"
        # a stream ends at synthesize-stopped; an audio cycle it opened is closed first
        # (this one failed before any audio, so it opened none)
        assert types(got)[-1] == "synthesize-stopped"
        assert ("audio-start" in types(got)) == ("audio-stop" in types(got))
        await _release(engine, session, passing)
        await assert_serves(daemon)


async def test_time_limit_mid_stream_cuts_the_stream(tiny) -> None:
    """The first segment in time, a later one not: the headers are gone, so the HTTP stream
    is cut; Wyoming ends with error + audio-stop after the audio it had."""
    session = HookedSession(tiny.session, Gate(let_through=1))
    engine = derive(tiny, session=session, max_request_seconds=1.5)
    async with serving(engine) as daemon, aiohttp.ClientSession() as http:
        async with http.post(
            url(daemon),
            json={**GOOD, "input": THREE, "response_format": "pcm"},
            timeout=client_timeout(),
        ) as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        await _release(engine, session, Gate(let_through=1))

        got = await wyoming_request(daemon, Synthesize(text=THREE).event())
        assert "audio-chunk" in types(got)
        assert error_of(got)["code"] == "synthesis_timeout" and types(got)[-1] == "audio-stop"
        await _release(engine, session, passing)
        await assert_serves(daemon)


async def _release(engine, session: HookedSession, then=None) -> None:
    """Let the call stuck at the gate finish, then install the next hook (a fresh gate)."""
    await wait_idle(engine)
    session.hook.open()  # a call already inside keeps this gate; new calls get the next hook
    session.hook = then or Gate()
