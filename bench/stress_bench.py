"""Hostile and heavy clients against the daemon with its defaults, on loopback, bounded.

For ``--seconds`` (75): HTTP streaming clients (pcm, mp3, opus, sse) and Wyoming clients
(plain ``synthesize`` and Home Assistant's streaming ``synthesize-start/chunk/stop``) in
loops over varied texts, one request in three hung up mid-stream; one HTTP client that
stops reading for 30 s; slow clients (HTTP headers and body a byte every 2 s, a Wyoming
frame a byte every 2 s) that reconnect whenever they are cut; ``/health`` every 250 ms.
HTTP clients honour ``Retry-After`` as the openai SDK does; Home Assistant never retries,
so Wyoming clients go straight to their next request.

Reported: failed requests (anything but audio, a clean refusal or our own hang-up),
refusals per protocol, first audio of admitted requests per protocol (p50/p90/max, also
split into the opening burst and after it), the share of admitted requests whose first
audio came later than the daemon promised them (its ``fastkokoro_first_audio_late_total``
over ``..._promised_total``, where the daemon has them) and, seen from the clients, the
share over 15 s; how long slow clients were held, /health p99, RSS growth, and a fresh
short request's first audio after the load against the same server idle before it
(medians of 9, with the machine's other CPU use during each measurement, to show it
was quiet; the load average during the run is reported too).

    uv run --extra cpu python bench/stress_bench.py [--seconds 75] [--compare-ref REF]

``--compare-ref`` runs the same load against another commit too (a git worktree, e.g.
the commit before this work), both daemons up at once and loaded in turn, ``--rounds``
times (A B, B A, ...), so a shared machine's drifting load falls on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import ROOT, TEXTS, assets, median, pct
from load_bench import Server, _tree, wait_ready

VARIED = [
    TEXTS["short"],
    TEXTS["fox"],
    TEXTS["medium"],
    "It is 7:45 pm and the oven is preheated to 220 degrees.",
    "Your package from Amazon was delivered at 3 o'clock; it cost $12.50.",
    "I couldn't find a device called 'garage heater'. Did you mean the hallway heater?",
    "Good morning! You have two meetings today, at 10 and at half past two.",
    "The front door is locked, the alarm is armed, and all windows are closed.",
    "Dr. Smith's office called about your appointment on Tuesday, March 3rd.",
    "Playing 'Bohemian Rhapsody' by Queen on the living room speaker.",
    "Warning: the freezer temperature has been above minus ten for 45 minutes.",
    " ".join(TEXTS["long"].split(". ")[:3]) + ".",
]
FORMATS = ("pcm", "mp3", "opus", "sse")
HA_REPLIES = [t for t in VARIED if len(t) < 120]
BURST_S = 15.0  # requests sent this soon after the start are the opening burst


class Stats:
    """Every outcome of the run, by protocol."""

    def __init__(self) -> None:
        self.outcomes: dict[str, Counter[str]] = defaultdict(Counter)
        self.first_audio: dict[str, list[float]] = defaultdict(list)
        self.admitted_first: dict[str, list[float]] = defaultdict(list)  # burst or not
        self.timeline: list[tuple[str, float, float]] = []  # (protocol, sent at, waited)
        self.retry_after: list[float] = []
        self.failures: list[str] = []
        self.health: list[float] = []
        self.health_failed = 0
        self.slow_held: dict[str, list[float]] = defaultdict(list)
        self.started = time.monotonic()

    def record_first(self, protocol: str, t0: float) -> None:
        """First audio of a request sent at ``t0``; requests sent in the opening burst
        (every client at once, before the server has seen any load) are kept apart too."""
        late = t0 - self.started >= BURST_S
        waited = time.monotonic() - t0
        self.first_audio[protocol + ("" if late else " (opening burst)")].append(waited)
        self.admitted_first[protocol].append(waited)
        self.timeline.append((protocol, round(t0 - self.started, 2), round(waited, 2)))

    def fail(self, protocol: str, why: str) -> None:
        self.outcomes[protocol]["failed"] += 1
        if len(self.failures) < 20:
            self.failures.append(f"{protocol}: {why}")


async def http_client(
    port: int, stop: float, stats: Stats, rng: random.Random, fmt: str, hang_up_every: int = 3
) -> None:
    url = f"http://127.0.0.1:{port}/v1/audio/speech"
    n = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as s:
        while time.monotonic() < stop:
            n += 1
            hang_up = n % hang_up_every == 0
            body = {"model": "tts-1", "input": rng.choice(VARIED), "voice": "af_heart"}
            body |= (
                {"response_format": "pcm", "stream_format": "sse"}
                if fmt == "sse"
                else {"response_format": fmt}
            )
            t0 = time.monotonic()
            try:
                async with s.post(url, json=body) as r:
                    if r.status == 503:
                        stats.outcomes["http"]["refused"] += 1
                        wait = float(r.headers.get("Retry-After", "1"))
                        stats.retry_after.append(wait)
                        await asyncio.sleep(min(wait, max(0.0, stop - time.monotonic())))
                        continue
                    if r.status != 200:
                        stats.fail("http", f"status {r.status}: {(await r.text())[:200]}")
                        continue
                    got, tail = 0, b""
                    async for chunk in r.content.iter_any():
                        if got == 0:
                            stats.record_first("http", t0)
                        got += len(chunk)
                        tail = (tail + chunk)[-256:]
                        if hang_up and got > 4096:
                            break
                    if hang_up:
                        stats.outcomes["http"]["hung up"] += 1
                    elif fmt == "sse" and b"speech.audio.done" not in tail:
                        stats.fail("http", f"sse stream without its done event: {tail[-120:]!r}")
                    elif got == 0:
                        stats.fail("http", f"{fmt}: 200 with no audio")
                    else:
                        stats.outcomes["http"]["ok"] += 1
            except (aiohttp.ClientError, TimeoutError) as err:
                stats.fail("http", f"{type(err).__name__}: {err}")


async def wyoming_client(
    port: int, stop: float, stats: Stats, rng: random.Random, streaming: bool, think: float
) -> None:
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

    n = 0
    while time.monotonic() < stop:
        n += 1
        hang_up = n % 3 == 0
        text = rng.choice(HA_REPLIES)
        end = "synthesize-stopped" if streaming else "audio-stop"
        try:
            async with AsyncTcpClient("127.0.0.1", port) as client:
                t0 = time.monotonic()
                if streaming:
                    await client.write_event(SynthesizeStart().event())
                    words = text.split()
                    for i in range(0, len(words), 3):
                        await client.write_event(
                            SynthesizeChunk(text=" ".join(words[i : i + 3]) + " ").event()
                        )
                        await asyncio.sleep(0.03)  # an LLM's tokens
                    t0 = time.monotonic()  # first audio counts from the last text chunk
                    await client.write_event(SynthesizeStop().event())
                else:
                    await client.write_event(Synthesize(text=text).event())
                seen: list[str] = []
                error = None
                while not seen or seen[-1] != end:
                    event = await asyncio.wait_for(client.read_event(), 120)
                    if event is None:
                        break
                    seen.append(event.type)
                    if event.type == "error":
                        error = event.data.get("code")
                    if event.type == "audio-chunk" and seen.count("audio-chunk") == 1:
                        if error is None:
                            stats.record_first("wyoming", t0)
                        if hang_up:
                            break
                if hang_up and "audio-chunk" in seen:
                    stats.outcomes["wyoming"]["hung up"] += 1
                elif error == "busy":
                    stats.outcomes["wyoming"]["refused"] += 1
                    await asyncio.sleep(1.0)  # a person asks again, not a loop
                elif error is not None or not seen or seen[-1] != end:
                    stats.fail("wyoming", f"error={error} events={seen[-3:]}")
                else:
                    stats.outcomes["wyoming"]["ok"] += 1
        except (OSError, TimeoutError) as err:
            stats.fail("wyoming", f"{type(err).__name__}: {err}")
        if think > 0:  # a person listens, then asks again: uniform, mean ``think`` seconds
            await asyncio.sleep(rng.uniform(0, 2 * think))


async def stalled_reader(port: int, stats: Stats) -> None:
    """Reads the first audio, stops reading for 30 s, then reads the rest."""
    url = f"http://127.0.0.1:{port}/v1/audio/speech"
    body = {"model": "tts-1", "input": TEXTS["long"], "voice": "af_heart", "response_format": "pcm"}
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(20):  # refused: come back after Retry-After, as the SDK does
                async with s.post(url, json=body) as r:
                    if r.status == 503:
                        stats.outcomes["stalled reader"]["refused"] += 1
                        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                        continue
                    if r.status != 200:
                        stats.fail("stalled reader", f"status {r.status}")
                        return
                    await r.content.readany()
                    await asyncio.sleep(30)
                    rest = await r.read()
                    stats.outcomes["stalled reader"]["ok" if len(rest) > 48_000 else "short"] += 1
                    return
    except (aiohttp.ClientError, TimeoutError) as err:
        stats.fail("stalled reader", f"{type(err).__name__}: {err}")


async def slow_client(port: int, stop: float, stats: Stats, kind: str, every: float = 2.0) -> None:
    """Sends a request a byte every ``every`` s; reconnects each time it is cut."""
    body = json.dumps({"model": "tts-1", "input": "Hello.", "voice": "af_heart"}).encode()
    head = b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    payloads = {
        "http headers": (b"", head + b"X-Slow: " + b"a" * 200 + b"\r\n\r\n"),
        "http body": (head + f"Content-Length: {len(body)}\r\n\r\n".encode(), body),
        "wyoming frame": (b"", json.dumps({"type": "synthesize", "data": {"text": "Hi"}}).encode()),
    }
    at_once, trickled = payloads[kind]
    while time.monotonic() < stop:
        t0 = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(1)
            continue
        try:
            writer.write(at_once)
            for byte in trickled:
                if time.monotonic() >= stop:
                    break
                writer.write(bytes([byte]))
                await writer.drain()
                try:
                    if await asyncio.wait_for(reader.read(65536), every) == b"":
                        break  # closed
                    await asyncio.wait_for(reader.read(), 10)
                    break  # an answer (408 / error event), then the close
                except TimeoutError:
                    continue
        except (ConnectionError, RuntimeError):
            pass
        finally:
            writer.close()
        if time.monotonic() < stop:
            stats.slow_held[kind].append(time.monotonic() - t0)


async def health_probe(port: int, stop: float, stats: Stats) -> None:
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                async with s.get(f"http://127.0.0.1:{port}/health") as r:
                    await r.read()
                    stats.health.append(time.monotonic() - t0)
            except aiohttp.ClientError:
                stats.health_failed += 1
            await asyncio.sleep(0.25)


def rss_mb(server: Server) -> float:
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_ticks(pids: list[int]) -> tuple[int, int]:
    """(all busy ticks on the machine, ticks of ``pids``) from /proc."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(x) for x in fields) - int(fields[3]) - int(fields[4])
    ours = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ours += int(stat[11]) + int(stat[12])
        except OSError:
            pass
    return busy, ours


async def fresh_first_audio(port: int, server: Server, runs: int) -> tuple[float, float]:
    """Median first audio of a short request on a quiet server, and the CPU share the
    rest of the machine used meanwhile (the check that it was quiet)."""
    url = f"http://127.0.0.1:{port}/v1/audio/speech"
    times = []
    pids = sorted({*_tree(server.proc.pid), *_tree(os.getpid())})
    busy0, ours0 = cpu_ticks(pids)
    t0 = time.monotonic()
    async with aiohttp.ClientSession() as s:
        for i in range(runs):
            body = {"model": "tts-1", "input": HA_REPLIES[i % len(HA_REPLIES)], "voice": "af_heart"}
            start = time.monotonic()
            async with s.post(url, json={**body, "response_format": "pcm"}) as r:
                await r.content.readany()
                times.append(time.monotonic() - start)
                await r.read()
            await asyncio.sleep(0.3)
    busy1, ours1 = cpu_ticks(pids)
    wall_ticks = (time.monotonic() - t0) * 100 * os.cpu_count()
    return median(times), (busy1 - busy0 - (ours1 - ours0)) / wall_ticks


async def promises(port: int) -> dict[str, tuple[float, float]]:
    """(first audio promised, late) per kind from the daemon's /metrics; empty where the
    daemon has no such counters (before they existed)."""
    found: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
            text = await r.text()
    for line in text.splitlines():
        for i, name in enumerate(("promised", "late")):
            prefix = f'fastkokoro_first_audio_{name}_total{{kind="'
            if line.startswith(prefix):
                kind, value = line[len(prefix) :].split('"} ')
                found[kind][i] = float(value)
    return {k: (v[0], v[1]) for k, v in found.items()}


def spread(values: list[float]) -> tuple[float, float, float, int]:
    """p50, p90, max and count."""
    return median(values), pct(values, 90), max(values, default=float("nan")), len(values)


async def wait_quiet(port: int, timeout: float = 120) -> None:
    """Until the daemon reports no active streams (the load's tail has drained)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                text = await r.text()
            if "fastkokoro_active_streams 0.0" in text:
                return
            await asyncio.sleep(0.5)


def start(source: Path, model: Path, voices: Path, http: int, wyo: int, log: Path) -> Server:
    cmd = [
        sys.executable, "-m", "fastkokoro_wyoming", "serve",
        "--engine-model-path", str(model), "--engine-model-voices", str(voices),
        "--http-host", "127.0.0.1", "--http-port", str(http),
        "--wyoming-host", "127.0.0.1", "--wyoming-port", str(wyo),
        "--wyoming-zeroconf", "false", "--log-level", "INFO",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(source)}
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=source, env=env
    )
    return Server(source.name, http, proc)


@dataclass
class Run:
    """One daemon under test and everything measured on it across the rounds."""

    source: Path
    http: int
    wyo: int
    server: Server
    log: Path
    stats: Stats = field(default_factory=Stats)
    idle: tuple[float, float] = (math.nan, math.nan)  # first audio, others' CPU share
    rss: list[float] = field(default_factory=list)  # start, peak
    load_avg: list[float] = field(default_factory=list)  # at the end of each round


async def prepare(source: Path, http: int, wyo: int, runs: int) -> Run:
    model, voices = assets()
    log = Path(tempfile.mkdtemp()) / "daemon.log"
    run = Run(source, http, wyo, start(source, model, voices, http, wyo, log), log)
    await wait_ready(http, run.server.proc)
    await asyncio.sleep(3)
    run.idle = await fresh_first_audio(http, run.server, runs)
    run.rss = [rss_mb(run.server)] * 2
    return run


async def load_round(run: Run, args: argparse.Namespace, seed: int) -> None:
    """The load for ``args.seconds`` against ``run``'s daemon, then until it drained."""
    stats, rng, http, wyo = run.stats, random.Random(seed), run.http, run.wyo
    stats.started = time.monotonic()  # each round opens with every client at once
    stop = time.monotonic() + args.seconds
    tasks = [http_client(http, stop, stats, random.Random(rng.random()), FORMATS[i % 4])
             for i in range(args.http_clients)]  # fmt: skip
    think = args.wyoming_think
    tasks += [wyoming_client(wyo, stop, stats, random.Random(rng.random()), i % 2 == 1, think)
              for i in range(args.wyoming_clients)]  # fmt: skip
    tasks += [health_probe(http, stop, stats)]
    if not args.no_hostile:
        tasks += [slow_client(http, stop, stats, "http headers"),
                  slow_client(http, stop, stats, "http body"),
                  slow_client(wyo, stop, stats, "wyoming frame"),
                  stalled_reader(http, stats)]  # fmt: skip
    runner = asyncio.gather(*tasks)
    while not runner.done():
        run.rss[1] = max(run.rss[1], rss_mb(run.server))
        await asyncio.wait([runner], timeout=1)
    runner.result()
    run.load_avg.append(os.getloadavg()[0])
    await wait_quiet(http)


async def finish(run: Run, runs: int) -> dict:
    try:
        kept = await promises(run.http)
        await asyncio.sleep(5)
        after_ttfa, after_other_cpu = await fresh_first_audio(run.http, run.server, runs)
        rss1 = rss_mb(run.server)
        text = run.log.read_text(errors="replace")
        cuts = sum("closing the connection from" in x for x in text.splitlines())
        tracebacks = text.count("Traceback")
    finally:
        run.server.stop()
    stats = run.stats
    return {
        "source": str(run.source), "outcomes": {k: dict(v) for k, v in stats.outcomes.items()},
        "failures": stats.failures,
        "first_audio": {k: spread(v) for k, v in stats.first_audio.items()},
        "admitted_first_audio": {k: spread(v) for k, v in stats.admitted_first.items()},
        "over_15s": {k: sum(x > 15 for x in v) / len(v) for k, v in stats.admitted_first.items()},
        "promises": kept, "load_avg_1m_end": max(run.load_avg),
        "retry_after": sorted(Counter(stats.retry_after).items()),
        "slow_held_s": {k: (median(v), max(v), len(v)) for k, v in stats.slow_held.items() if v},
        "health_p99_ms": pct(stats.health, 99) * 1000, "health_failed": stats.health_failed,
        "rss_mb": (*run.rss, rss1), "idle_ttfa": run.idle[0], "after_ttfa": after_ttfa,
        "other_cpu_share": (run.idle[1], after_other_cpu),
        "cuts_logged": cuts, "tracebacks": tracebacks, "timeline": stats.timeline,
    }  # fmt: skip


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=75, help="of load per round")
    parser.add_argument("--rounds", type=int, default=1, help="alternating between the trees")
    parser.add_argument("--http-clients", type=int, default=12)
    parser.add_argument("--wyoming-clients", type=int, default=6)
    parser.add_argument(
        "--wyoming-think", type=float, default=0.0,
        help="mean seconds a Wyoming client waits between requests (0: back to back)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--fresh-runs", type=int, default=9, help="fresh requests, idle/after")
    parser.add_argument(
        "--no-hostile", action="store_true", help="no slow clients, no stalled reader"
    )
    parser.add_argument("--compare-ref", help="also run a git ref (a worktree), interleaved")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stress.json")
    args = parser.parse_args()
    trees = [ROOT]
    if args.compare_ref:
        tree = Path(tempfile.mkdtemp()) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(tree), args.compare_ref],
            cwd=ROOT,
            check=True,
        )
        trees.insert(0, tree)
    runs: list[Run] = []
    try:
        for i, tree in enumerate(trees):
            runs.append(await prepare(tree, 18911 + 2 * i, 18912 + 2 * i, args.fresh_runs))
        for r in range(args.rounds):  # A B, B A, ...: drift in the machine's load evens out
            for run in runs if r % 2 == 0 else runs[::-1]:
                await load_round(run, args, args.seed + r)
                seen = {k: spread(v) for k, v in run.stats.admitted_first.items()}
                outcomes = {k: dict(v) for k, v in run.stats.outcomes.items()}
                print(f"round {r} {run.source.name}: {outcomes} {seen}", flush=True)
        results = [await finish(run, args.fresh_runs) for run in runs]
    finally:
        for run in runs:
            run.server.stop()
        if args.compare_ref:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(trees[0])], cwd=ROOT, check=False
            )
    args.out.write_text(json.dumps(results, indent=1))
    for result in results:
        print(json.dumps(result, indent=1))
    print(summary(results))


def summary(results: list[dict]) -> str:
    """The before/after rows of bench/results/stress.md, one column per run."""

    def spread_of(r: dict, protocol: str) -> str:
        p50, p90, top, n = r["admitted_first_audio"].get(protocol, (math.nan,) * 3 + (0,))
        return f"{p50:.1f} / {p90:.1f} / {top:.1f} s ({n})"

    def late_of(r: dict, kind: str) -> str:
        promised, late = r["promises"].get(kind, (0.0, 0.0))
        return f"{late / promised:.0%} of {promised:.0f}" if promised else "n/a"

    rows = {
        "failed requests": lambda r: str(sum(o.get("failed", 0) for o in r["outcomes"].values())),
        "HTTP admitted / refused": lambda r: "{} / {}".format(
            r["outcomes"].get("http", {}).get("ok", 0)
            + r["outcomes"].get("http", {}).get("hung up", 0),
            r["outcomes"].get("http", {}).get("refused", 0),
        ),
        "Wyoming admitted / refused": lambda r: "{} / {}".format(
            r["outcomes"].get("wyoming", {}).get("ok", 0)
            + r["outcomes"].get("wyoming", {}).get("hung up", 0),
            r["outcomes"].get("wyoming", {}).get("refused", 0),
        ),
        "HTTP first audio p50 / p90 / max": lambda r: spread_of(r, "http"),
        "Wyoming first audio p50 / p90 / max": lambda r: spread_of(r, "wyoming"),
        "HTTP over 15 s (clients)": lambda r: f"{r['over_15s'].get('http', 0):.0%}",
        "bulk late vs promise (daemon)": lambda r: late_of(r, "bulk"),
        "interactive late vs promise (daemon)": lambda r: late_of(r, "interactive"),
        "/health p99": lambda r: f"{r['health_p99_ms']:.1f} ms",
        "load average at the end": lambda r: f"{r['load_avg_1m_end']:.1f}",
    }
    lines = ["| | " + " | ".join(Path(r["source"]).name for r in results) + " |",
             "|---|" + "---|" * len(results)]  # fmt: skip
    lines += [f"| {name} | " + " | ".join(f(r) for r in results) + " |" for name, f in rows.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    asyncio.run(main())
