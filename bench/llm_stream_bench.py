"""An LLM reply streamed into Wyoming as Home Assistant relays it: first audio and gaps.

Starts two daemons on a slowed engine (Raspberry Pi-like: one ONNX Runtime thread, one
worker, and a spinner process keeping another core busy): one from a base checkout
(``--base``, default: ``git archive main``), one from this tree. Each reply is replayed
as an LLM writing at 15-40 tokens/s (a seeded rate per reply, jittered per token); HA
holds the first 60 characters back (``STREAM_RESPONSE_CHARS``), then sends every delta
as a synthesize-chunk, then the compatibility synthesize and synthesize-stop, all with
wyoming's AsyncTcpClient. The client plays audio as it arrives, like HA's player:

* first audio: from the LLM's first token to the first audio-chunk;
* gaps: while playing, the audio ran out before the next chunk came (an underrun: the
  listener hears a hole in mid-reply that the text did not ask for); max and total.

Runs alternate base and new (one client; then four clients at once, each a different
reply), so both see the same machine load. The machine is shared: compare ratios.

    uv run --extra cpu python bench/llm_stream_bench.py [--rounds 2] [--base DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from common import ROOT, assets, median

REPLIES = [
    "Sure, I turned off the lights in the kitchen and the hallway. The front door is "
    "locked, and the garage door is closed as well. Is there anything else you would "
    "like me to do before you go to bed?",
    "The weather tomorrow looks mild: a high of nineteen degrees, light wind from the "
    "west, and a small chance of rain in the late afternoon. If you are going out in the "
    "evening, you might want to take a light jacket with you.",
    "I found three timers running. The pasta timer has four minutes left, the laundry "
    "timer has twenty two minutes left, and the timer you called homework ends at half "
    "past seven. Should I cancel any of them?",
    "Your next meeting is with the design team at two o'clock, in the small conference "
    "room on the third floor. After that you have nothing scheduled until tomorrow "
    "morning, when the quarterly review starts at nine.",
    "Okay, here is a quick recipe for pancakes. Mix one cup of flour, one egg and a cup of "
    "milk until smooth, then let the batter rest for a few minutes. Cook each pancake on "
    "a hot pan until bubbles form, then flip it and cook the other side.",
    "The living room is at twenty one degrees and the humidity is forty five percent, "
    "which is comfortable. The bedroom is a little cooler, at nineteen degrees, so I "
    "turned the heating up by one degree for the night.",
]
# An agent that calls a tool after its first words: the LLM stops writing (here 3 s).
STALLED = ("Let me check the thermostat for you.", 3.0, " The living room is at twenty one "
           "degrees, and the heating will stay on until ten o'clock tonight.")  # fmt: skip
HA_FIRST_CHARS = 60  # HA buffers a streaming agent's first 60 characters


def tokens(text: str) -> list[str]:
    """LLM-like tokens: words with their leading space, long words in 4-letter pieces."""
    out: list[str] = []
    for word in re.findall(r"\s*\S+", text):
        out.extend(word[i : i + 5] for i in range(0, len(word), 5))
    return out


@dataclass
class Result:
    first_audio: float = float("nan")  # s from the first token
    max_gap: float = 0.0
    total_gap: float = 0.0
    audio_s: float = 0.0
    gaps: list[float] = field(default_factory=list)


async def replay(
    port: int, text: str, rate: float, seed: int, stall: tuple[int, float] | None = None
) -> Result:
    """One reply at ``rate`` tokens/s (``stall``: after token n, a pause of s seconds, and
    HA sends what it holds); what the listener heard, as the client saw it."""
    from wyoming.audio import AudioChunk
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

    rng = random.Random(seed)
    pieces = tokens(text)
    result = Result()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart().event())
        t0 = time.monotonic()  # the LLM's first token

        async def llm() -> None:
            held = ""
            started = False
            for n, token in enumerate(pieces):
                await asyncio.sleep(rng.uniform(0.7, 1.3) / rate)
                held += token
                if stall is not None and n + 1 == stall[0]:
                    await client.write_event(SynthesizeChunk(text=held).event())
                    held, started = "", True
                    await asyncio.sleep(stall[1])
                    continue
                if not started and len(held) < HA_FIRST_CHARS:
                    continue
                started = True
                await client.write_event(SynthesizeChunk(text=held).event())
                held = ""
            if held:
                await client.write_event(SynthesizeChunk(text=held).event())
            await client.write_event(Synthesize(text=text).event())
            await client.write_event(SynthesizeStop().event())

        writer = asyncio.create_task(llm())
        playout_end: float | None = None
        while True:
            event = await asyncio.wait_for(client.read_event(), 300)
            if event is None or event.type == "synthesize-stopped":
                break
            if not AudioChunk.is_type(event.type):
                continue
            now = time.monotonic()
            seconds = len(AudioChunk.from_event(event).audio) / 2 / 24000
            result.audio_s += seconds
            if playout_end is None:
                result.first_audio = now - t0
                playout_end = now
            elif now > playout_end:
                gap = now - playout_end
                result.gaps.append(gap)
                result.total_gap += gap
                result.max_gap = max(result.max_gap, gap)
                playout_end = now
            playout_end += seconds
        await writer
    return result


def start_daemon(tree: Path, port: int, log: Path, threads: int) -> subprocess.Popen[bytes]:
    model, voices = assets()
    env = dict(os.environ, PYTHONPATH=str(tree))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fastkokoro_wyoming",
            "--model",
            str(model),
            "--voices",
            str(voices),
            "--http-enabled",
            "false",
            "--wyoming-host",
            "127.0.0.1",
            "--wyoming-port",
            str(port),
            "--wyoming-zeroconf",
            "false",
            "--engine-runtime-intra-op-threads",
            str(threads),
            "--engine-runtime-workers",
            "1",
        ],
        cwd=tree,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while "Ready:" not in log.read_text(errors="replace"):
        if daemon.poll() is not None or time.monotonic() > deadline:
            print(log.read_text(errors="replace"))
            raise SystemExit(1)
        time.sleep(0.5)


def base_tree(ref: str) -> Path:
    out = Path(tempfile.mkdtemp(prefix="fk-base-"))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive.stdout, check=True)
    return out


def row(name: str, results: list[Result]) -> str:
    spoken = [r for r in results if r.audio_s > 0]  # a refused reply (busy) has none
    firsts = sorted(r.first_audio for r in spoken) or [float("nan")]
    maxes = sorted(r.max_gap for r in spoken) or [float("nan")]
    totals = [r.total_gap for r in spoken]
    audio = sum(r.audio_s for r in spoken)
    holes = sum(1 for r in spoken for g in r.gaps if g > 0.05)
    return (
        f"| {name} | {len(spoken)}/{len(results)} | {median(firsts):.2f} | {firsts[-1]:.2f} | "
        f"{median(maxes):.2f} | {maxes[-1]:.2f} | {sum(totals):.2f} | {holes} | {audio:.0f} |"
    )


async def run(args: argparse.Namespace, ports: dict[str, int]) -> None:
    rng = random.Random(26)
    single: dict[str, list[Result]] = {name: [] for name in ports}
    four: dict[str, list[Result]] = {name: [] for name in ports}
    stalled: dict[str, list[Result]] = {name: [] for name in ports}
    for round_ in range(args.rounds):
        for i, text in enumerate(REPLIES):
            rate = rng.uniform(15, 40)
            for name, port in ports.items():  # interleaved: the same load for both
                r = await replay(port, text, rate, seed=round_ * 100 + i)
                single[name].append(r)
                print(
                    f"1 client  {name:5} reply {i} at {rate:4.1f} tok/s: first audio "
                    f"{r.first_audio:.2f} s, max gap {r.max_gap:.2f} s",
                    flush=True,
                )
        before, pause, after = STALLED
        rate = rng.uniform(15, 40)
        for name, port in ports.items():
            r = await replay(port, before + after, rate, round_, stall=(len(tokens(before)), pause))
            stalled[name].append(r)
            print(
                f"tool call {name:5}: first audio {r.first_audio:.2f} s (the LLM stopped "
                f"{pause:g} s after its first sentence)",
                flush=True,
            )
        for name, port in ports.items() if args.four else ():
            rates = [rng.uniform(15, 40) for _ in range(4)]
            texts = REPLIES[round_ % 2 * 2 :][:4]
            rs = await asyncio.gather(
                *(replay(port, t, rate, seed=round_ * 10 + k) for k, (t, rate) in
                  enumerate(zip(texts, rates, strict=True)))
            )  # fmt: skip
            four[name].extend(rs)
            print(
                f"4 clients {name:5}: first audio {[f'{r.first_audio:.2f}' for r in rs]}, "
                f"max gap {[f'{r.max_gap:.2f}' for r in rs]}",
                flush=True,
            )
    print(
        "\n| run | replies spoken | first audio p50 s | first audio max s | max gap p50 s "
        "| max gap max s | total gap s | gaps > 50 ms | audio s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in ports:
        print(row(f"{name}, 1 client", single[name]))
    for name in ports if args.four else ():
        print(row(f"{name}, 4 clients", four[name]))
    for name in ports:
        print(row(f"{name}, 1 client, tool call", stalled[name]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base", default=None, help="base checkout (default: git archive main)")
    parser.add_argument("--port", type=int, default=18310)
    parser.add_argument("--threads", type=int, default=1, help="ONNX intra-op threads")
    parser.add_argument("--no-spinner", dest="spinner", action="store_false")
    parser.add_argument("--no-four", dest="four", action="store_false", help="skip 4 clients")
    args = parser.parse_args()
    base = Path(args.base) if args.base else base_tree("main")
    logs = Path(tempfile.mkdtemp(prefix="fk-llmbench-"))
    trees = {"base": base, "new": ROOT}
    ports = {name: args.port + i for i, name in enumerate(trees)}
    daemons = {
        n: start_daemon(t, ports[n], logs / f"{n}.log", args.threads) for n, t in trees.items()
    }
    spinner = None
    try:
        for name, daemon in daemons.items():
            wait_ready(daemon, logs / f"{name}.log")
        if args.spinner:  # the other core busy, as on a Pi doing other work
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        asyncio.run(run(args, ports))
    finally:
        if spinner is not None:
            spinner.kill()
        for daemon in daemons.values():
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
