"""A new user's first minute: time to "Ready", the first reply, and replies meanwhile.

Starts the real daemon (``python -m fastkokoro_wyoming serve``) of a given checkout as a
subprocess and, over the OpenAI HTTP API (streamed PCM):

* **time to ready**: from the process start to the "Ready:" log line (the ports open);
* **first request**: first audio of a short request sent at once after that;
* **the first 60 s**: a short request for the default voice every ~0.5 s, while a second
  and a third voice are used for the first time (at +3 s and +15 s; each starts their
  calibration): first audio p50/p90 of those short requests.

Scenarios: ``empty-cache``: the model files on disk (``--model``/``--voices``), an empty
``engine.model.cache_dir`` (no windowed graphs, no priors). ``fresh-home``: a new ``HOME``
(no cache of any kind, numba's included), the model files copied from the local mirror
(``~/.cache/fastkokoro-wyoming/mirror`` or ``$FASTKOKORO_TEST_ASSETS``) into where
``--source mirror`` looks for them, so nothing is downloaded.

    uv run --group dev --extra cpu python bench/startup_bench.py \\
        --checkout before=/work/main --checkout after=. [--out bench/results/startup.md]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from common import assets, pct

SHORT = "Turn on the kitchen lights, please."
VOICES = (("am_michael", 3.0), ("bf_emma", 15.0))  # first used at +3 s and +15 s
WINDOW_S = 60.0
READY_TIMEOUT_S = float(os.environ.get("STARTUP_BENCH_READY_TIMEOUT", "900"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def first_audio(base: str, text: str, voice: str, refused: list[int] | None = None) -> float:
    """Seconds from the first try to the first audio byte; a 503 (busy: the shared machine
    saturated) is retried after its Retry-After, as a client would, and counted."""
    body = {"model": "tts-1", "input": text, "voice": voice, "response_format": "pcm"}
    t0 = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as s:
        for _ in range(60):
            async with s.post(f"{base}/v1/audio/speech", json=body) as r:
                if r.status == 503:
                    if refused is not None:
                        refused.append(1)
                    await asyncio.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                if r.status != 200:
                    raise RuntimeError(f"{r.status}: {await r.text()}")
                async for chunk in r.content.iter_any():
                    if chunk:
                        took = time.perf_counter() - t0
                        async for _ in r.content.iter_any():
                            pass
                        return took
    raise RuntimeError("no audio")


async def run_one(python: str, source: Path, scenario: str, work: Path) -> dict:
    model, voices = assets()
    home = work / "home"
    home.mkdir(parents=True)
    cache = home / ".cache" / "fastkokoro-wyoming"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}
    port = free_port()
    engine: dict = {"model": {"cache_dir": str(cache)}}
    if scenario == "empty-cache":
        engine["model"].update(path=str(model), voices=str(voices))
    else:  # fresh home: what --source mirror would have downloaded, already in place
        env["HOME"] = str(home)
        env.pop("NUMBA_CACHE_DIR", None)
        mirror = cache / "mirror"
        mirror.mkdir(parents=True)
        shutil.copy2(model, mirror / model.name)
        shutil.copytree(voices, mirror / "voices")
        engine["model"]["source"] = "mirror"
    config = {
        "log_level": "INFO",
        "engine": engine,
        "http": {"host": "127.0.0.1", "port": port},
        "wyoming": {"enabled": False},
    }
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        python, "-m", "fastkokoro_wyoming", "-c", str(path), "serve",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=source,  # python -m puts the checkout's own package first on the path
    )  # fmt: skip
    lines: list[tuple[float, str]] = []
    ready = asyncio.Event()

    async def read() -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            lines.append((time.perf_counter() - t0, text))
            if "Ready:" in text:
                ready.set()

    reader = asyncio.create_task(read())
    shorts: list[float] = []
    others: dict[str, float] = {}
    refused: list[int] = []
    first = float("nan")
    try:
        try:
            await asyncio.wait_for(ready.wait(), READY_TIMEOUT_S)
        except TimeoutError:  # a saturated shared machine: report it as "> limit"
            log = [f"{a:7.1f} {t}" for a, t in lines]
            return {"ready": None, "first": first, "shorts": [], "others": {},
                    "windowed_at": {}, "refused": 0, "log": log}  # fmt: skip
        t_ready = time.perf_counter() - t0
        base = f"http://127.0.0.1:{port}"
        first = await first_audio(base, SHORT, "af_heart", refused)
        start = time.perf_counter()

        async def new_voice(voice: str, at: float) -> None:
            await asyncio.sleep(at)
            others[voice] = await first_audio(base, f"Hello, this is {voice}.", voice, refused)

        extra = [asyncio.create_task(new_voice(v, at)) for v, at in VOICES]
        while time.perf_counter() - start < WINDOW_S:
            shorts.append(await first_audio(base, SHORT, "af_heart", refused))
            await asyncio.sleep(0.5)
        await asyncio.gather(*extra)
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
        await reader
    windowed_at = {}
    for at, text in lines:
        m = re.search(r"Norm priors for (\w+)(?:: \d+ anchors| ready)", text)
        if m:
            windowed_at.setdefault(m.group(1), at)
    return {
        "ready": t_ready,
        "first": first,
        "shorts": shorts,
        "others": others,
        "windowed_at": windowed_at,
        "refused": len(refused),
        "log": [f"{at:7.1f} {text}" for at, text in lines],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkout", action="append", required=True, help="label=path")
    ap.add_argument("--scenario", action="append", choices=["empty-cache", "fresh-home"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    scenarios = args.scenario or ["empty-cache", "fresh-home"]
    rows, logs = [], []
    for scenario in scenarios:
        for spec in args.checkout:
            label, path = spec.split("=", 1)
            source = Path(path).resolve()
            venv = source / ".venv" / "bin" / "python"
            python = str(venv) if venv.exists() else sys.executable
            with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
                print(f"{scenario} / {label} ...", file=sys.stderr, flush=True)
                r = asyncio.run(run_one(python, source, scenario, Path(tmp)))
            s = r["shorts"]
            if r["ready"] is None:
                rows.append(
                    f"| {scenario} | {label} | > {READY_TIMEOUT_S:.0f} (not ready) |" + " |" * 8
                )
                print(rows[-1], flush=True)
                logs.append(f"### {scenario} / {label}\n\n```\n" + "\n".join(r["log"]) + "\n```\n")
                continue
            others = ", ".join(f"{v} {t:.2f}" for v, t in r["others"].items())
            windowed = ", ".join(f"{v} {t:.0f}" for v, t in r["windowed_at"].items())
            rows.append(
                f"| {scenario} | {label} | {r['ready']:.1f} | {r['first']:.2f} | {len(s)} | "
                f"{statistics.median(s):.2f} | {pct(s, 90):.2f} | {max(s):.2f} | {others} | "
                f"{windowed} | {r['refused']} |"
            )
            print(rows[-1], flush=True)
            logs.append(f"### {scenario} / {label}\n\n```\n" + "\n".join(r["log"]) + "\n```\n")
    out = [
        "| scenario | checkout | ready s | first request first audio s | short requests | "
        "p50 s | p90 s | max s | 2nd/3rd voice first audio s | priors ready at s | 503s retried |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    print("\n".join(out))
    if args.out:
        args.out.write_text("\n".join(out) + "\n\n## Logs\n\n" + "\n".join(logs))


if __name__ == "__main__":
    main()
