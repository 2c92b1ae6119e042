"""Capacity: audio made per wall second by this branch, today's main and fastkokoro 0.7.0.

All servers are started at once (idle, they cost nothing) on the same int8 model and voice,
then every case (text x concurrent clients, pcm, streamed) runs on each server in turn,
round after round: the servers are interleaved, so a change in the machine's load (it is
shared with other work) hits them alike, and the ratios are what to read. Reported per
server and case: first audio p50/p90, audio-s per wall-s for all clients together, and the
ratio to fastkokoro's in the same round.

    uv run --extra cpu python bench/capacity_bench.py [--texts medium,long] [--clients 1,4,8]
        [--main /work/main] [--rounds 1] [--splits 1x2,2x1] [--off] [--openvino bf16,int8]
        [--skip-anchor]
    (--off: also this branch with int8 off; --splits: this branch with each scheduler
    workers x intra-op threads split, so the split and the int8 rewrite are measured in one
    interleaved run; --openvino bf16,int8: also this branch with engine.runtime.backend
    openvino at each engine.runtime.openvino_precision, needs `uv run --extra cpu --extra
    openvino-int8`; the other servers of this branch are
    pinned to onnxruntime, and every server is measured only once /health lists no
    one-time work left: the OpenVINO compile, the priors)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import aiohttp
from common import ROOT, TEXTS, assets
from load_bench import Server, one_client, run_case, start_anchor, start_ours, wait_ready

# admission would refuse the 4th and 8th client on 2 cores (that is its job): measure instead
UNLIMITED = ("--engine-limits-bulk-max-wait-s", "100000", "--engine-limits-bulk-realtime-share")
UNLIMITED += ("1000", "--engine-limits-interactive-max-wait-s", "100000")
ORT = ("--engine-runtime-backend", "onnxruntime")  # auto would take OpenVINO where installed


def start_tree(root: Path, name: str, model: Path, voices: Path, port: int, log: Path) -> Server:
    """Another checkout's code (today's main) with this venv's packages."""
    cmd = [sys.executable, "-m", "fastkokoro_wyoming", "--model", str(model)]
    cmd += ["--voices", str(voices), "--http-host", "127.0.0.1", "--http-port", str(port)]
    cmd += ["--wyoming-enabled", "false", "--log-level", "WARNING", *UNLIMITED]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=root, env=env)
    return Server(name, port, proc)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", default="medium,long")
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--main", default=str(ROOT.parent.parent / "main"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--splits", default="1x2", help="this branch: workers x threads, ...")
    parser.add_argument("--off", action="store_true", help="also this branch with int8 off")
    parser.add_argument(
        "--openvino",
        default="",
        help="also this branch with the OpenVINO backend at each precision: bf16,int8,...",
    )
    parser.add_argument(
        "--skip-anchor", action="store_true", help="no fastkokoro: ratios to the last server"
    )
    args = parser.parse_args()
    model, voices = assets()
    logs = Path(tempfile.mkdtemp(prefix="fk-capacity-"))
    servers = []
    for i, split in enumerate(args.splits.split(",")):  # this branch, int8 auto
        w, t = split.split("x")
        flags = (*UNLIMITED, *ORT, "--engine-runtime-workers", w)
        flags += ("--engine-runtime-intra-op-threads", t)
        servers.append(start_ours(model, voices, 18980 + i, logs / f"int8-{split}.log", flags))
        servers[-1].name = f"this branch, {w} x {t}"
    if args.off:
        off = start_ours(
            model,
            voices,
            18991,
            logs / "off.log",
            (*UNLIMITED, *ORT, "--engine-decoder-int8-convolutions", "off"),
        )
        off.name = "this branch, int8 off"
        servers.append(off)
    for i, precision in enumerate(filter(None, args.openvino.split(","))):
        flags = (*UNLIMITED, "--engine-runtime-backend", "openvino")
        flags += ("--engine-runtime-openvino-precision", precision)
        servers.append(start_ours(model, voices, 18985 + i, logs / f"ov-{precision}.log", flags))
        servers[-1].name = f"this branch, OpenVINO {precision}"
    if Path(args.main, "fastkokoro_wyoming").is_dir():
        servers.append(start_tree(Path(args.main), "main", model, voices, 18992, logs / "m.log"))
    if not args.skip_anchor:  # its first start installs fastkokoro 0.7.0 (minutes)
        servers.append(start_anchor(model, voices, 18993, logs / "anchor.log"))
    print(f"logs in {logs}; os.cpu_count()={os.cpu_count()}; load avg {os.getloadavg()}")
    results: dict[tuple[str, str, int], list[dict[str, float]]] = defaultdict(list)
    try:
        for s in servers:
            await wait_ready(s.port, s.proc, timeout=900)
            await wait_prepared(s.port, timeout=900)
            async with aiohttp.ClientSession() as session:
                await one_client(session, s, "Warm up the server.")
        cases = [(t, int(n)) for t in args.texts.split(",") for n in args.clients.split(",")]
        print(
            "\n| server | text | clients | first audio p50 s | p90 s | audio-s/wall-s "
            f"| ÷ {servers[-1].name} (same rounds) | peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for text, n in cases:  # printed as each case ends: a cut-short run keeps its rows
            for _ in range(args.rounds):
                for s in servers:
                    results[(s.name, text, n)].append(await run_case(s, TEXTS[text], n))
            for s in servers:
                _row(s, results, servers[-1].name, text, n)
    finally:
        for s in servers:
            s.stop()


async def wait_prepared(port: int, timeout: float) -> None:
    """Until /health lists no one-time work (priors, the OpenVINO compile): what a
    server serves after its first start, not during it."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(f"http://127.0.0.1:{port}/health") as r:
                if not (await r.json()).get("preparing"):
                    return
            await asyncio.sleep(1.0)
    print(f"server on {port} still preparing after {timeout:.0f} s: measured anyway")


def _row(s: Server, results, anchor: str, text: str, n: int) -> None:
    runs = results[(s.name, text, n)]
    ratios = [
        r["throughput"] / a["throughput"]
        for r, a in zip(runs, results[(anchor, text, n)], strict=True)
    ]
    p50, p90, tp = (statistics.median(r[k] for r in runs) for k in _KEYS)
    print(
        f"| {s.name} | {text} | {n} | {p50:.2f} | {p90:.2f} | {tp:.2f} | "
        f"{statistics.median(ratios):.2f} | {s.peak_rss_mb():.0f} |",
        flush=True,
    )


_KEYS = ("ttfa_p50", "ttfa_p90", "throughput")

if __name__ == "__main__":
    asyncio.run(main())
