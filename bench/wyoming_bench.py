"""wyoming-bench (PyPI) and a raw Home Assistant-style client against the daemon.

Starts the daemon with the real int8 model (Wyoming only, loopback), once with the
windowed decoder (the default) and once with ``engine.decoder.streaming false``, and for
each: runs ``uvx wyoming-bench tts`` (TTFT, total, RTF; streaming and not), then a raw
``wyoming`` client that streams text the way HA relays an LLM (a few words every 50 ms,
synthesize-start/chunk/stop) and reports the time from the chunk that completes the first
sentence to the first audio-chunk.

    uv run --extra cpu python bench/wyoming_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import TEXTS, assets

LLM_TEXT = (
    "Sure, I turned on the kitchen lights. The living room is already bright, so I left it "
    "as it is. Anything else?"
)


async def raw_stream(port: int, text: str, words_per_chunk: int = 3) -> tuple[float, float]:
    """HA's streaming path: (first audio after the first sentence's last chunk, total)."""
    from wyoming.audio import AudioChunk, AudioStop
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop, SynthesizeVoice

    words = text.split()
    chunks = [
        " ".join(words[i : i + words_per_chunk]) + " "
        for i in range(0, len(words), words_per_chunk)
    ]
    first_end = next(i for i, c in enumerate(chunks) if "." in c)
    t_sentence = t_audio = None
    t0 = time.perf_counter()
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name="af_heart")).event())

        async def send() -> None:
            nonlocal t_sentence
            for i, c in enumerate(chunks):
                await client.write_event(SynthesizeChunk(text=c).event())
                if i == first_end:
                    t_sentence = time.perf_counter()
                await asyncio.sleep(0.05)
            await client.write_event(SynthesizeStop().event())

        sender = asyncio.create_task(send())
        while True:
            event = await asyncio.wait_for(client.read_event(), 120)
            if event is None:
                break
            if AudioChunk.is_type(event.type) and t_audio is None:
                t_audio = time.perf_counter()
            if AudioStop.is_type(event.type) or event.type == "synthesize-stopped":
                break
        await sender
    assert t_sentence is not None and t_audio is not None
    return t_audio - t_sentence, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18210)
    args = parser.parse_args()
    rows = []
    for streaming in ("true", "false"):
        code, raw = run_variant(args, streaming)
        if code:
            return code
        rows.append((streaming, raw))
    print(
        "\n| decoder.streaming | raw HA-style stream: first audio after the first sentence, "
        "p50 / max s | total p50 s |"
    )
    print("|---|---|---|")
    for streaming, raw in rows:
        firsts = sorted(r[0] for r in raw)
        totals = sorted(r[1] for r in raw)
        print(
            f"| {streaming} | {firsts[len(firsts) // 2]:.2f} / {firsts[-1]:.2f} | "
            f"{totals[len(totals) // 2]:.2f} |"
        )
    return 0


def run_variant(args: argparse.Namespace, streaming: str) -> tuple[int, list[tuple[float, float]]]:
    print(f"\n## engine.decoder.streaming = {streaming}", flush=True)
    model, voices = assets()
    log = Path(tempfile.mkdtemp(prefix="fk-wybench-")) / "daemon.log"
    daemon = subprocess.Popen(
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
            str(args.port),
            "--wyoming-zeroconf",
            "false",
            "--engine-decoder-streaming",
            streaming,
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while "Ready:" not in log.read_text(errors="replace"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                print(log.read_text(errors="replace"))
                return 1, []
            time.sleep(0.5)
        texts = Path(log.parent / "texts.txt")
        texts.write_text(TEXTS["short"] + "\n" + TEXTS["medium"] + "\n")
        cmd = [
            "uvx",
            "wyoming-bench",
            "tts",
            f"127.0.0.1:{args.port}",
            "--mode",
            "both",
            "--rounds",
            str(args.rounds),
            "--warmup",
            "1",
            "--timeout",
            "120",
            "--texts-file",
            str(texts),
            "--config",
            '{"voice": {"name": "af_heart"}}',
        ]
        print("$", " ".join(cmd), flush=True)
        code = subprocess.run(cmd, check=False).returncode
        raw = [asyncio.run(raw_stream(args.port, LLM_TEXT)) for _ in range(args.rounds + 1)][1:]
        return code, raw
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
