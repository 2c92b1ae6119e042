"""The installed entry points as subprocesses: YAML config, both ports, zeroconf, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
import yaml
from openai import AsyncOpenAI
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize
from zeroconf import InterfaceChoice, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from tests.support.daemon import (
    MUSEUM,
    TIMEOUT,
    assert_says,
    pcm16_to_float,
    read_event,
    read_until,
    types_of,
    wyoming_audio,
)

pytestmark = pytest.mark.integration

SERVICE_TYPE = "_wyoming._tcp.local."
TEXT = "The weather today is sunny and warm."
STOP_DEADLINE = 30.0  # SIGTERM -> exit: http.drain_timeout_s (10 s) + the model call in flight


def console_script() -> str:
    found = Path(sys.executable).parent / "fastkokoro-wyoming"
    script = str(found) if found.exists() else shutil.which("fastkokoro-wyoming")
    assert script, "the fastkokoro-wyoming console script is not installed"
    return script


LAUNCHERS = {
    "python -m": lambda: [sys.executable, "-m", "fastkokoro_wyoming"],
    "console script": lambda: [console_script()],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """No FASTKOKORO_* from the caller's shell: the YAML file alone configures the daemon."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}


@dataclass
class Daemon:
    proc: asyncio.subprocess.Process
    http_port: int
    wyoming_port: int
    zeroconf_name: str
    lines: list[str] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None

    async def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if "Ready:" in text:
                self.ready.set()

    def log(self) -> str:
        return "\n".join(self.lines[-40:])


@pytest.fixture(params=list(LAUNCHERS))
async def served(request, kokoro_assets, tmp_path) -> AsyncIterator[Daemon]:
    model, voices = kokoro_assets
    name = f"fk-test-{secrets.token_hex(4)}"
    http_port, wyoming_port = free_port(), free_port()
    config = {
        "log_level": "INFO",
        "engine": {"model": {"path": str(model), "voices": str(voices)}},
        "http": {"host": "127.0.0.1", "port": http_port},
        "wyoming": {
            "host": "127.0.0.1",
            "port": wyoming_port,
            "zeroconf": True,
            "zeroconf_name": name,
        },
    }
    path = tmp_path / "fastkokoro.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *LAUNCHERS[request.param](),
        "-c",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    daemon = Daemon(proc, http_port, wyoming_port, name)
    daemon.reader = asyncio.create_task(daemon.read_stderr())
    try:
        # "Ready:" within 120 s, or the process exits first (then show its log).
        waits = [asyncio.create_task(daemon.ready.wait()), asyncio.create_task(proc.wait())]
        await asyncio.wait(waits, timeout=120, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
            task.cancel()
        assert daemon.ready.is_set(), f"no 'Ready:' line (exit {proc.returncode}):\n{daemon.log()}"
        yield daemon
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await asyncio.wait_for(daemon.reader, 30)


async def browse(name: str, interfaces: object, timeout: float = 15.0) -> AsyncServiceInfo | None:
    """Browse ``_wyoming._tcp.local.`` until ``name`` shows up; resolve it (None if unseen)."""
    full = f"{name}.{SERVICE_TYPE}"
    seen = asyncio.Event()

    def on_change(zeroconf, service_type, name, state_change) -> None:  # noqa: ARG001
        if name == full and state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            seen.set()

    aiozc = AsyncZeroconf(interfaces=interfaces)
    browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    try:
        try:
            await asyncio.wait_for(seen.wait(), timeout)
        except TimeoutError:
            return None
        info = AsyncServiceInfo(SERVICE_TYPE, full)
        assert await info.async_request(aiozc.zeroconf, 5000), f"{full} seen but not resolved"
        return info
    finally:
        await browser.async_cancel()
        await aiozc.async_close()


async def test_entry_point_serves_both_ports_announces_and_stops_on_sigterm(served):
    ready_line = next(line for line in served.lines if "Ready:" in line)
    assert f"http://127.0.0.1:{served.http_port}/v1" in ready_line
    assert f"tcp://127.0.0.1:{served.wyoming_port}" in ready_line
    assert f"{served.zeroconf_name}._wyoming._tcp.local." in ready_line
    assert "54 voices in 9 languages" in ready_line

    # OpenAI API, through the SDK.
    async with AsyncOpenAI(
        base_url=f"http://127.0.0.1:{served.http_port}/v1",
        api_key="unused",
        timeout=TIMEOUT,
        max_retries=0,
    ) as client:
        response = await client.audio.speech.create(
            model="tts-1", voice="af_heart", input=TEXT, response_format="pcm"
        )
    await assert_says(pcm16_to_float(response.content), TEXT)

    # Wyoming, like Home Assistant: describe, then synthesize on a new connection.
    async with AsyncTcpClient("127.0.0.1", served.wyoming_port) as wyoming:
        await wyoming.write_event(Describe().event())
        info = Info.from_event(await read_event(wyoming))
    assert len(info.tts[0].voices) == 54
    async with AsyncTcpClient("127.0.0.1", served.wyoming_port) as wyoming:
        await wyoming.write_event(Synthesize(text=TEXT).event())
        events = await read_until(wyoming, "audio-stop")
    assert types_of(events).count("audio-stop") == 1
    await assert_says(wyoming_audio(events), TEXT)

    # Zeroconf: what Home Assistant's discovery would see.
    found = await browse(served.zeroconf_name, interfaces=["127.0.0.1"])
    if found is None:  # loopback multicast may be off: try every interface
        print("zeroconf: not seen on 127.0.0.1; browsing all interfaces")
        found = await browse(served.zeroconf_name, interfaces=InterfaceChoice.All)
    assert found is not None, "the daemon's zeroconf announcement was not seen"
    assert found.port == served.wyoming_port
    assert "127.0.0.1" in found.parsed_addresses()
    print("zeroconf:", found.name, found.parsed_addresses(), found.port, found.properties)
    assert not any(found.properties.values())  # HA reads no TXT properties; none are sent

    # SIGTERM in the middle of a long HTTP stream: clean exit 0 and "Stopped".
    body = {"model": "tts-1", "input": MUSEUM, "voice": "af_heart", "response_format": "pcm"}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        resp = await asyncio.wait_for(
            http.post(f"http://127.0.0.1:{served.http_port}/v1/audio/speech", json=body), TIMEOUT
        )
        assert resp.status == 200
        first = await asyncio.wait_for(resp.content.readany(), TIMEOUT)
        assert first
        served.proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        signalled = loop.time()

        async def drain() -> int:  # keep reading so the server can flush what it drains
            total = len(first)
            try:
                async for part in resp.content.iter_any():
                    total += len(part)
            except aiohttp.ClientError:
                pass  # cut when the drain timeout expires
            return total

        reading = asyncio.create_task(drain())
        code = await asyncio.wait_for(served.proc.wait(), STOP_DEADLINE)
        print(
            f"SIGTERM -> exit {code} in {loop.time() - signalled:.1f} s; "
            f"{await asyncio.wait_for(reading, 30)} bytes of audio read"
        )
        resp.release()
    await asyncio.wait_for(served.reader, 30)
    assert code == 0, served.log()
    assert any(line.rstrip().endswith("Stopped") for line in served.lines), served.log()


@pytest.mark.parametrize("launcher", list(LAUNCHERS))
async def test_unknown_yaml_key_exits_2_naming_it(tmp_path, kokoro_assets, launcher):
    model, voices = kokoro_assets
    path = tmp_path / "bad.yaml"
    config = {
        "engine": {"model": {"path": str(model), "voices": str(voices)}},
        "wyoming": {"zeroconf_nmae": "typo"},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *LAUNCHERS[launcher](),
        "-c",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "wyoming.zeroconf_nmae" in lines[0] and "unknown key" in lines[0]
    assert stdout == b""


async def test_sigterm_during_first_start_work_exits_cleanly(kokoro_assets, tmp_path):
    """Stopped while its one-time work still runs (here the int8 convolutions' check on a
    cache that has the windowed graphs but no check yet: a background thread inside ONNX
    Runtime), the daemon exits 0 and says the work resumes at the next start. The
    interpreter's exit would otherwise run ONNX Runtime's C++ destructors under that thread
    (SIGABRT, "terminate called without an active exception": seen on the arm64 image under
    qemu, whose check takes minutes). ~15 s."""
    from fastkokoro_wyoming.config import DEFAULT_CACHE

    model, voices = kokoro_assets
    (graphs,) = Path(DEFAULT_CACHE).expanduser().glob(f"windowed/{model.stem}-*/")
    fresh = tmp_path / "cache" / "windowed" / graphs.name
    fresh.mkdir(parents=True)
    for name in ("front", "fr", "phase", "stats", "generator"):
        shutil.copy(graphs / f"{name}.onnx", fresh)
    shutil.copy(graphs / "meta.json", fresh)
    http_port = free_port()
    config = {
        "log_level": "INFO",
        "engine": {"model": {"path": str(model), "voices": str(voices),
                             "cache_dir": str(tmp_path / "cache")},
                   "runtime": {"backend": "onnxruntime"}},
        "http": {"host": "127.0.0.1", "port": http_port},
        "wyoming": {"enabled": False},
    }  # fmt: skip
    path = tmp_path / "fastkokoro.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        *LAUNCHERS["python -m"](), "-c", str(path),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=clean_env(),
    )  # fmt: skip
    daemon = Daemon(proc, http_port, 0, "")
    daemon.reader = asyncio.create_task(daemon.read_stderr())
    try:
        await asyncio.wait_for(daemon.ready.wait(), 120)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/health") as resp:
                preparing = (await resp.json()).get("preparing")
        assert preparing, "the one-time work had already ended"
        await asyncio.sleep(3.0)  # past the rewrite, into the check's ORT runs
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), STOP_DEADLINE)
        await asyncio.wait_for(daemon.reader, 30)
        print(daemon.log())
        assert code == 0, daemon.log()
        assert not any("terminate called" in line for line in daemon.lines), daemon.log()
        assert any("one-time work" in line and "next start" in line for line in daemon.lines)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
