"""Concurrent streaming clients against this daemon and fastkokoro 0.7.0, in one run.

Each server is started in turn on the same machine with the same int8 model and voices
(the anchor through ../shared/anchor/run-fastkokoro.sh), then N clients (1, 4, 8) post
the same text at once and stream pcm. Reported per server, text and N: time to first
audio p50/p90, player stall (how long a player that starts at the first byte runs dry),
aggregate audio-seconds per wall-second, /health latency under load (p50/max) and the
server's peak RSS. The bare model's throughput on the same segments closes the table.

    uv run --extra cpu python bench/load_bench.py [--quick] [--clients 1,4,8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import ROOT, TEXTS, assets, median, pct

BYTES_PER_S = 48_000  # 24 kHz s16le mono
ANCHOR = Path(os.environ.get("FK_ANCHOR", ROOT.parent / "shared" / "anchor" / "run-fastkokoro.sh"))


@dataclass
class ClientResult:
    ttfa: float
    total: float
    audio_s: float
    stall: float


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    body_extra: dict = field(default_factory=dict)

    def peak_rss_mb(self) -> float:
        for pid in _tree(self.proc.pid):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024
            except OSError:
                continue
        return float("nan")

    def stop(self) -> None:
        for pid in reversed(_tree(self.proc.pid)):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _tree(pid: int) -> list[int]:
    """pid and its descendants, parent first (the anchor script execs python)."""
    out = [pid]
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out.extend(_tree(int(k)))
    return out


def stall_time(arrivals: list[tuple[float, int]], start: float) -> float:
    """Seconds a player starting at the first byte waits for data after it started."""
    if not arrivals:
        return 0.0
    play_clock = arrivals[0][0]  # wall time when the buffered audio would run out
    stall = 0.0
    for t, n in arrivals:
        if t > play_clock:  # the buffer ran dry before this chunk came
            stall += t - play_clock
            play_clock = t
        play_clock += n / BYTES_PER_S
    return stall


async def one_client(
    session: aiohttp.ClientSession,
    server: Server,
    text: str,
    fmt: str = "pcm",
    hang_up: bool = False,
) -> ClientResult:
    body = {
        "model": "tts-1",
        "input": text,
        "voice": "af_heart",
        "response_format": fmt,
        "stream": True,
        **server.body_extra,
    }
    t0 = time.perf_counter()
    arrivals: list[tuple[float, int]] = []
    async with session.post(f"http://127.0.0.1:{server.port}/v1/audio/speech", json=body) as r:
        if r.status != 200:
            raise RuntimeError(f"{server.name}: HTTP {r.status}: {await r.text()}")
        async for chunk in r.content.iter_any():
            arrivals.append((time.perf_counter(), len(chunk)))
            if hang_up:
                r.close()  # the client goes away after the first audio
                break
    total_bytes = sum(n for _, n in arrivals)
    pcm = fmt == "pcm"
    return ClientResult(
        arrivals[0][0] - t0,
        time.perf_counter() - t0,
        total_bytes / BYTES_PER_S if pcm else float("nan"),
        stall_time(arrivals, t0) if pcm else float("nan"),
    )


async def health_probe(server: Server, stop: asyncio.Event, out: list[float]) -> None:
    async with aiohttp.ClientSession() as s:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                async with s.get(
                    f"http://127.0.0.1:{server.port}/health",
                    timeout=aiohttp.ClientTimeout(total=120),
                ) as r:
                    await r.read()
                out.append(time.perf_counter() - t0)
            except (TimeoutError, aiohttp.ClientError):
                out.append(float("inf"))
            await asyncio.sleep(0.25)


async def run_case(server: Server, text: str, clients: int, fmt: str = "pcm") -> dict[str, float]:
    health: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.create_task(health_probe(server, stop, health))
    timeout = aiohttp.ClientTimeout(total=1800)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *(one_client(session, server, text, fmt) for _ in range(clients))
        )
        wall = time.perf_counter() - t0
    stop.set()
    await probe
    ttfa = sorted(r.ttfa for r in results)
    return {
        "ttfa_p50": pct(ttfa, 50),
        "ttfa_p90": pct(ttfa, 90),
        "total_p50": pct(sorted(r.total for r in results), 50),
        "stall_max": max(r.stall for r in results),
        "stall_mean": sum(r.stall for r in results) / clients,
        "throughput": sum(r.audio_s for r in results) / wall,
        "health_p50_ms": 1000 * median(health) if health else float("nan"),
        "health_max_ms": 1000 * max(health) if health else float("nan"),
    }


async def disconnect_case(server: Server) -> tuple[float, float]:
    """First audio of a short request on an idle server, and right after a client that
    started a long stream hung up: equal if the dropped stream's work was freed at once."""
    async with aiohttp.ClientSession() as s:
        idle = (await one_client(s, server, TEXTS["short"])).ttfa
        await one_client(s, server, TEXTS["long"], hang_up=True)
        after = (await one_client(s, server, TEXTS["short"])).ttfa
    return idle, after


async def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with s.get(f"http://127.0.0.1:{port}/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError(f"server on {port} not ready")


def start_ours(
    model: Path, voices: Path, port: int, log: Path, extra: tuple[str, ...] = ()
) -> Server:
    cmd = [
        sys.executable,
        "-m",
        "fastkokoro_wyoming",
        "--model",
        str(model),
        "--voices",
        str(voices),
        "--http-host",
        "127.0.0.1",
        "--http-port",
        str(port),
        "--wyoming-enabled",
        "false",
        "--log-level",
        "WARNING",
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT)
    name = "fastkokoro-wyoming" + (" (whole segments)" if "false" in extra else "")
    return Server(name, port, proc)


def start_whole(model: Path, voices: Path, port: int, log: Path) -> Server:
    """Ours with the windowed decoder off: one whole model call per segment."""
    return start_ours(model, voices, port, log, ("--engine-decoder-streaming", "false"))


def start_anchor(model: Path, voices: Path, port: int, log: Path) -> Server:
    env = {
        **os.environ,
        "FK_MODEL": str(model),
        "FK_VOICES_DIR": str(voices),
        "FK_WORK": str(ROOT / ".anchor"),
        "FASTKOKORO_ONNX_INTRA_OP_NUM_THREADS": "2",
    }
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen(
        ["bash", str(ANCHOR), str(port)], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    return Server("fastkokoro 0.7.0", port, proc)


async def bare_throughput(model: Path, voices: Path, texts: list[str]) -> list[tuple[str, float]]:
    """Audio seconds per wall second of bare model calls over each text's own segments."""
    from engine_bench import floor_run

    from fastkokoro_wyoming.assets import load_engine
    from fastkokoro_wyoming.config import EngineConfig, ModelConfig
    from fastkokoro_wyoming.engine import SynthesisRequest

    engine = await load_engine(EngineConfig(model=ModelConfig(path=str(model), voices=str(voices))))
    out = []
    for name in texts:
        audio = sum([c.size async for c in engine.synthesize(SynthesisRequest(TEXTS[name]))])
        _, total = await asyncio.to_thread(floor_run, engine, TEXTS[name])
        out.append((name, audio / engine.sample_rate / total))
    engine.close()
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--texts", default="fox,short,medium,long")
    parser.add_argument("--quick", action="store_true", help="short+medium, 1 and 4 clients")
    parser.add_argument("--skip-anchor", action="store_true")
    parser.add_argument("--skip-whole", action="store_true", help="no streaming-off server")
    parser.add_argument("--formats", default="pcm,mp3")
    args = parser.parse_args()
    clients = [1, 4] if args.quick else [int(c) for c in args.clients.split(",")]
    texts = ["fox", "medium"] if args.quick else args.texts.split(",")
    model, voices = assets()
    logs = Path(tempfile.mkdtemp(prefix="fk-bench-"))
    starters = [start_ours] + ([] if args.skip_whole else [start_whole])
    starters += [] if args.skip_anchor else [start_anchor]
    print(f"logs in {logs}; texts {texts}; clients {clients}")
    formats = args.formats.split(",")
    disconnects: list[tuple[str, tuple[float, float]]] = []
    print(
        "| server | format | text | clients | first audio p50 s | p90 s | total p50 s | "
        "stall max s | audio-s/wall-s | /health p50 ms | /health max ms | peak RSS MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, start in enumerate(starters):
        server = start(model, voices, 18980 + i, logs / f"server{i}.log")
        try:
            await wait_ready(server.port, server.proc)
            async with aiohttp.ClientSession() as s:
                await one_client(s, server, "Warm up the server.")
            for fmt in formats:
                for name in texts if fmt == "pcm" else ["medium"]:
                    for n in clients if fmt == "pcm" else [c for c in clients if c <= 4]:
                        r = await run_case(server, TEXTS[name], n, fmt)
                        print(
                            f"| {server.name} | {fmt} | {name} | {n} | {r['ttfa_p50']:.2f} | "
                            f"{r['ttfa_p90']:.2f} | {r['total_p50']:.2f} | "
                            f"{r['stall_max']:.2f} | {r['throughput']:.2f} "
                            f"| {r['health_p50_ms']:.0f} | {r['health_max_ms']:.0f} | "
                            f"{server.peak_rss_mb():.0f} |",
                            flush=True,
                        )
            disconnects.append((server.name, await disconnect_case(server)))
        finally:
            server.stop()
    print("\n| bare model (one ONNX session, same segments back to back) | text | audio-s/wall-s |")
    print("|---|---|---|")
    for name, rate in await bare_throughput(model, voices, texts):
        print(f"| bare | {name} | {rate:.2f} |")
    print(
        "\n| server | short request, idle server: first audio s | right after a long "
        "stream was dropped: first audio s |"
    )
    print("|---|---|---|")
    for name, (idle, after) in disconnects:
        print(f"| {name} | {idle:.2f} | {after:.2f} |")


if __name__ == "__main__":
    asyncio.run(main())
