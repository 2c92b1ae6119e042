"""Replicas behind HAProxy on loopback: load, SIGTERM one mid-load, restart it, count.

Starts N daemons (``python -m fastkokoro_wyoming``, one engine each) and HAProxy (the
Debian package) from deploy/haproxy/haproxy.cfg.template: the OpenAI API in HTTP mode,
Wyoming in TCP mode, both checked on each replica's ``/health``. Clients (the openai SDK
streaming pcm, and wyoming's AsyncTcpClient with one connection per request, as Home
Assistant does) run in loops; replica r1 gets SIGTERM while streams are in flight on it,
drains and exits; later it is started again and must come back into rotation.

Prints a JSON report: requests, failures, retries and redispatches (HAProxy's counters),
the time HAProxy took to mark r1 down and back up, the drain (streams in flight at the
signal, and whether they all finished with their whole audio), and which replica served
what in each phase. ``--replicas 2 --http-clients 2 --wyoming-clients 2`` by default.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import re
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_assets import asset_dir  # noqa: E402
from tts_clients import free_port, openai_speech, wait_healthy, wyoming_speech  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "haproxy" / "haproxy.cfg.template"
TEXT = "Okay, I turned on the kitchen lights."  # a short Assist-style reply
KINDS = ("http", "wyoming")
WYOMING_LOG = re.compile(r"^wyoming [\d.]+:(\d+) wyoming/(\S+) ")


@dataclass
class Replica:
    """One daemon on loopback, configured the way a container would be: by variables."""

    name: str
    http_port: int
    wyoming_port: int
    log: Path
    cpu: int | None = None  # pinned to one core: replicas on one host act like two machines
    proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        assets = asset_dir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}
        env.update(
            FASTKOKORO_ENGINE_MODEL_PATH=str(assets / "kokoro-v1.0-int8.onnx"),
            FASTKOKORO_ENGINE_MODEL_VOICES=str(assets / "voices"),
            FASTKOKORO_ENGINE_MODEL_CACHE_DIR=str(assets.parent),
            FASTKOKORO_ENGINE_RUNTIME_INTRA_OP_THREADS="1" if self.cpu is not None else "0",
            FASTKOKORO_HTTP_HOST="127.0.0.1",
            FASTKOKORO_HTTP_PORT=str(self.http_port),
            FASTKOKORO_WYOMING_HOST="127.0.0.1",
            FASTKOKORO_WYOMING_PORT=str(self.wyoming_port),
            FASTKOKORO_WYOMING_ZEROCONF="false",
            # every connection comes from the balancer's address: no per-peer cap
            FASTKOKORO_HTTP_MAX_CONNECTIONS_PER_PEER="0",
            FASTKOKORO_WYOMING_MAX_CONNECTIONS_PER_PEER="0",
        )
        return env

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastkokoro_wyoming"],
            env=self.env(),
            cwd=ROOT,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        if self.cpu is not None:  # before it starts threads; they inherit it
            os.sched_setaffinity(self.proc.pid, {self.cpu})

    def wait_healthy(self, timeout: float) -> float:
        alive = lambda: self.proc is not None and self.proc.poll() is None  # noqa: E731
        return wait_healthy(f"http://127.0.0.1:{self.http_port}", timeout, alive)

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


class HAProxy:
    """haproxy -db with the rendered template; its stats socket and its log."""

    def __init__(self, work: Path, replicas: list[Replica]) -> None:
        self.http_port, self.wyoming_port = free_port(), free_port()
        self.socket = work / "haproxy.sock"
        self.log = work / "haproxy.log"
        http = [f"    server {r.name} 127.0.0.1:{r.http_port} check" for r in replicas]
        wyoming = [
            f"    server {r.name} 127.0.0.1:{r.wyoming_port} check port {r.http_port}"
            for r in replicas
        ]
        self.cfg = work / "haproxy.cfg"
        self.cfg.write_text(
            string.Template(TEMPLATE.read_text()).substitute(
                stats_socket=self.socket,
                bind="127.0.0.1",
                http_port=self.http_port,
                wyoming_port=self.wyoming_port,
                http_servers="\n".join(http),
                wyoming_servers="\n".join(wyoming),
            )
        )
        subprocess.run(["haproxy", "-c", "-q", "-f", str(self.cfg)], check=True)
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(self.cfg)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(self.socket))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> list[dict[str, str]]:
        text = self.command("show stat").lstrip("# ")
        return list(csv.DictReader(text.splitlines()))

    def wait(self, server: str, want: str, timeout: float) -> float:
        """Seconds until ``server`` has status ``want`` in both backends."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                status = {(row["pxname"], row["svname"]): row["status"] for row in self.stats()}
                if all(status.get((b, server)) == want for b in ("openai", "wyoming")):
                    return time.monotonic() - start
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{server} not {want} after {timeout:.0f} s")

    def sessions(self, server: str) -> int:
        """Connections open to ``server`` now, both backends."""
        return sum(int(row["scur"] or 0) for row in self.stats() if row["svname"] == server)

    def wyoming_servers(self) -> dict[int, str]:
        """Client port -> replica, from the TCP frontend's log lines."""
        found = {}
        for line in self.log.read_text(errors="replace").splitlines():
            if m := WYOMING_LOG.match(line):
                found[int(m.group(1))] = m.group(2)
        return found

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Request:
    kind: str
    start: float
    end: float = 0.0
    ok: bool = False
    error: str = ""
    audio_s: float = 0.0
    server: str = ""
    client_port: int = 0


@dataclass
class Load:
    """Client loops through the balancer until ``stop`` is set; every request is recorded."""

    haproxy: HAProxy
    think_s: float  # pause between a client's requests, as a person's turns
    requests: list[Request] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    client_retries: int = 0  # 503s the SDK saw and retried after Retry-After

    def count(self, status: int) -> None:
        if status == 503:
            self.client_retries += 1

    async def http_loop(self) -> None:
        base = f"http://127.0.0.1:{self.haproxy.http_port}/v1"
        while not self.stop.is_set():
            req = Request("http", time.monotonic())
            self.requests.append(req)
            try:
                # the SDK's default retries, as OpenAI clients run it
                speech = await asyncio.to_thread(
                    openai_speech, base, TEXT, timeout=120, max_retries=2, on_status=self.count
                )
                req.ok, req.audio_s, req.server = True, speech.seconds, speech.served_by
            except Exception as exc:  # counted as a failure
                req.error = f"{type(exc).__name__}: {exc}"
            req.end = time.monotonic()
            await asyncio.sleep(self.think_s)

    async def wyoming_loop(self) -> None:
        while not self.stop.is_set():
            req = Request("wyoming", time.monotonic())
            self.requests.append(req)
            try:
                speech = await wyoming_speech(
                    "127.0.0.1", self.haproxy.wyoming_port, TEXT, timeout=120
                )
                req.ok, req.audio_s, req.client_port = True, speech.seconds, speech.client_port
            except Exception as exc:  # counted as a failure: Home Assistant never retries
                req.error = f"{type(exc).__name__}: {exc}"
            req.end = time.monotonic()
            await asyncio.sleep(self.think_s)

    def run_in_thread(self, http_clients: int, wyoming_clients: int) -> threading.Thread:
        async def main() -> None:
            loops = [self.http_loop() for _ in range(http_clients)]
            loops += [self.wyoming_loop() for _ in range(wyoming_clients)]
            await asyncio.gather(*loops)

        thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        thread.start()
        return thread

    def label_wyoming(self) -> None:
        servers = self.haproxy.wyoming_servers()
        for req in self.requests:
            if req.kind == "wyoming" and req.ok:
                req.server = servers.get(req.client_port, "?")


def time_exit(proc: subprocess.Popen, out: list[float]) -> None:
    proc.wait(120)
    out.append(time.monotonic())


def wait_until(predicate, timeout: float, what: str) -> None:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(what)
        time.sleep(0.05)


def run(args: argparse.Namespace) -> dict:
    """The scenario; returns the report (raises only when the setup itself fails)."""
    work = Path(tempfile.mkdtemp(prefix="haproxy-replicas-"))
    cores = sorted(os.sched_getaffinity(0))
    # one core each when there are enough: otherwise a restarting replica's model load
    # (a minute of CPU) starves the one left serving, which no real deployment shares
    pin = args.pin and len(cores) >= args.replicas
    replicas = [
        Replica(
            f"r{i + 1}", free_port(), free_port(), work / f"r{i + 1}.log", cores[i] if pin else None
        )
        for i in range(args.replicas)
    ]
    haproxy = None
    load = None
    try:
        for r in replicas:
            r.start()
        ready = {r.name: round(r.wait_healthy(args.startup_timeout), 1) for r in replicas}
        haproxy = HAProxy(work, replicas)
        for r in replicas:
            haproxy.wait(r.name, "UP", 30)
        load = Load(haproxy, args.think)
        thread = load.run_in_thread(args.http_clients, args.wyoming_clients)
        victim = replicas[0]
        time.sleep(args.warmup)
        # signal while streams are in flight on the victim
        wait_until(lambda: haproxy.sessions(victim.name) > 0, 60, "nothing in flight on r1")
        exited: list[float] = []  # when the victim's process ended, timed beside the check
        waiter = threading.Thread(target=time_exit, args=(victim.proc, exited))
        t_signal = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        waiter.start()
        down_s = haproxy.wait(victim.name, "DOWN", 60)
        waiter.join(130)
        exit_code = victim.proc.returncode
        drain_s = exited[0] - t_signal
        time.sleep(args.after)
        t_restart = time.monotonic()
        victim.start()
        victim.wait_healthy(args.startup_timeout)
        up_s = haproxy.wait(victim.name, "UP", 60)
        t_back = time.monotonic()
        time.sleep(args.after)
        load.stop.set()
        thread.join(300)
        load.label_wyoming()
        stats = haproxy.stats()
        return report(load.requests, stats, victim.name, t_signal, t_restart, t_back) | {
            "client_retries_after_503": load.client_retries,
            "replicas_ready_s": ready,
            "mark_down_s": round(down_s, 2),
            "signal_to_exit_s": round(drain_s, 2),
            "exit_code": exit_code,
            "restart_to_in_rotation_s": round(t_back - t_restart, 1),
            "marked_up_after_healthy_s": round(up_s, 2),
            "work": str(work),
        }
    finally:
        if load is not None:
            load.stop.set()
        if haproxy is not None:
            haproxy.stop()
        for r in replicas:
            r.stop()


def report(requests, stats, victim, t_signal, t_restart, t_back) -> dict:
    """What the run shows; the checks the test asserts are the booleans at the end."""
    done = [q for q in requests if q.end]
    failed = [q for q in done if not q.ok]
    full = sorted(q.audio_s for q in done if q.ok)
    median = full[len(full) // 2] if full else 0.0
    in_flight = [q for q in done if q.start < t_signal < q.end and q.server == victim]
    after = [q for q in done if t_signal <= q.start < t_restart]
    back = [q for q in done if q.start >= t_back]
    counters = {
        f"{row['pxname']}/{row['svname']}": {
            "sessions": int(row["stot"] or 0),
            "retries": int(row["wretr"] or 0),
            "redispatches": int(row["wredis"] or 0),
            "status": row["status"],
        }
        for row in stats
        if row["svname"] not in ("FRONTEND",)
    }

    def served(reqs: list[Request]) -> dict:  # kind -> replica -> requests it served
        return {k: dict(Counter(q.server for q in reqs if q.kind == k)) for k in KINDS}

    return {
        "requests": len(done),
        "by_kind": {k: sum(q.kind == k for q in done) for k in KINDS},
        "failed": len(failed),
        "failed_by_kind": {k: sum(q.kind == k for q in failed) for k in KINDS},
        "failures": [asdict(q) for q in failed][:10],
        "retries": sum(v["retries"] for k, v in counters.items() if k.endswith("/BACKEND")),
        "redispatches": sum(
            v["redispatches"] for k, v in counters.items() if k.endswith("/BACKEND")
        ),
        "haproxy": counters,
        "median_audio_s": round(median, 2),
        "in_flight_on_victim_at_signal": len(in_flight),
        "in_flight_finished_after_signal_s": round(
            max((q.end - t_signal for q in in_flight), default=0), 2
        ),
        "drained_complete": all(q.ok and q.audio_s >= 0.9 * median for q in in_flight),
        "started_after_signal": len(after),
        "after_signal_all_ok_elsewhere": all(q.ok and q.server != victim for q in after),
        "served_after_signal": served(after),
        "served_after_back_up": served(back),
        "victim_back_in_rotation": any(q.ok and q.server == victim for q in back),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--http-clients", type=int, default=2)
    parser.add_argument("--wyoming-clients", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=8, help="load before the SIGTERM, s")
    parser.add_argument("--after", type=float, default=12, help="load after each change, s")
    parser.add_argument("--think", type=float, default=6, help="pause between requests, s")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="no CPU pinning")
    parser.add_argument("--startup-timeout", type=float, default=600)
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    return 0 if result["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
