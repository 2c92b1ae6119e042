"""wyoming-bench (PyPI) against the daemon: TTFT, total time and RTF, streaming and not.

Starts the daemon with the real int8 model (Wyoming only, loopback), runs
``uvx wyoming-bench tts`` against it with the medium text and prints its report.

    uv run --extra cpu python bench/wyoming_bench.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import TEXTS, assets


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18210)
    args = parser.parse_args()
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
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 300
        while "Ready:" not in log.read_text(errors="replace"):
            if daemon.poll() is not None or time.monotonic() > deadline:
                print(log.read_text(errors="replace"))
                return 1
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
        return subprocess.run(cmd, check=False).returncode
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(30)


if __name__ == "__main__":
    raise SystemExit(main())
