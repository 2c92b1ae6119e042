"""Start images built by scripts/build_images.sh and speak through them with real clients.

Each image runs under ``buildah run --isolation chroot`` (``podman run`` needs cgroups this
kind of host may not give), which shares the host's network: the daemon's ports are on
127.0.0.1 here. The model comes from a /data volume pre-filled from the host's asset cache
(scripts/fetch_assets.py's cache: the same files ``fastkokoro-wyoming download --source
mirror`` writes), so the run needs no network for the model; without that copy the image
downloads it as on first start.

* CPU image: its ENTRYPOINT and CMD (``fastkokoro-wyoming serve``) as uid 10001, settings
  as ``FASTKOKORO_*`` variables as ``docker run -e`` would pass them.
* Add-on image: its s6 run script and discovery oneshot, run as the Supervisor runs them,
  with the options in /data/options.json and a stand-in Supervisor API on loopback that
  records the discovery POST.

Images of another architecture (``--arch``, scripts/build_images.sh's ARCH) run the same
way under qemu-user through binfmt_misc; ``--qemu-cpu`` picks the CPU model qemu emulates.

Writes a JSON report (sizes, build and start times, word accuracy, each request's wall
time, the engine's start-up lines: decoding, int8 convolutions) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fetch_assets import asset_dir  # noqa: E402
from tts_clients import free_port, openai_speech, wait_healthy, wyoming_speech  # noqa: E402

TEXT = "The quick brown fox jumps over the lazy dog."
ADDON_OPTIONS = {
    "voice": "af_heart",
    "languages": ["a"],
    "strategy": "adaptive",
    "threads": 0,
    "model_source": "mirror",
    "zeroconf": False,
    "log_level": "info",
}
S6 = "/etc/s6-overlay/s6-rc.d"
# the engine's start-up lines worth a report: what it decided on this CPU
ENGINE_LINES = (
    "Model ",
    "int8 convolutions",
    "Windowed decoding",
    "Generator backend",
    "Engine ready",
    "Ready:",
)


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def seed_data(data: Path, owner: int | None) -> None:
    """The host's model and voices (scripts/fetch_assets.py) and windowed-decoder cache,
    where engine.model.cache_dir=/data and source mirror look for them."""
    mirror = asset_dir()
    shutil.copytree(mirror, data / "mirror", dirs_exist_ok=True)
    if (mirror.parent / "windowed").is_dir():  # saves deriving the split graphs again
        shutil.copytree(mirror.parent / "windowed", data / "windowed", dirs_exist_ok=True)
    if owner is not None:
        for path in [data, *data.rglob("*")]:
            os.chown(path, owner, owner)


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def descendants(root: int) -> list[int]:
    """Processes under ``root``, parents before children."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        out += children.get(pid, [])
        todo += children.get(pid, [])
    return out


HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # uname -m -> Debian's name (--arch)


class Container:
    """A buildah working container of an image; commands run in it under chroot isolation."""

    def __init__(self, image: str, data: Path, foreign: bool = False) -> None:
        self.image, self.data = image, data
        self.name = f"fkcheck-{os.getpid()}-{int(time.time() * 1000) % 100000}"
        subprocess.run(
            ["buildah", "from", "--pull=never", "--name", self.name, image],
            check=True,
            capture_output=True,
        )
        # The image's VOLUME /data would be an anonymous volume over the bind mount below;
        # dropping it from this working container (not the image) is docker run -v data:/data.
        subprocess.run(["buildah", "config", "--volume", "/data-", self.name], capture_output=True)
        self.procs: list[subprocess.Popen] = []
        self.root: Path | None = None
        if foreign:
            self._mount_for_qemu()

    def _mount_for_qemu(self) -> None:
        """Another architecture runs in a plain chroot of the container's root, with /proc
        /dev and /data mounted but not /sys: onnxruntime's aarch64 wheel (its cpuinfo) crashes
        on import under qemu-user when it reads the host's x86 CPU topology in
        /sys/devices/system/cpu, and buildah's chroot isolation always mounts /sys (a
        bind or tmpfs over it is ignored). Without /sys, ORT logs that cpuinfo failed
        and runs its generic kernels, as on a board whose CPU it does not know."""
        out = subprocess.run(["buildah", "mount", self.name], capture_output=True, text=True)
        self.root = Path(out.stdout.strip())
        (self.root / "data").mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "proc", "proc", str(self.root / "proc")], check=True)
        subprocess.run(["mount", "--rbind", "/dev", str(self.root / "dev")], check=True)
        subprocess.run(["mount", "--bind", str(self.data), str(self.root / "data")], check=True)
        inspect = ["buildah", "inspect", "--type", "image", self.image]
        config = json.loads(subprocess.run(inspect, capture_output=True, check=True).stdout)
        config = config["OCIv1"]["config"]
        self.env = dict(v.split("=", 1) for v in config.get("Env") or [])
        self.workdir = config.get("WorkingDir") or "/"
        user = config.get("User") or "root"
        ids = self._chroot(["sh", "-c", f"id -u {user}; id -g {user}"], {}, "0:0")
        self.userspec = ":".join(subprocess.run(ids, capture_output=True, text=True,
                                                check=True).stdout.split())  # fmt: skip

    def _chroot(
        self, argv: list[str], env: dict[str, str], userspec: str | None = None
    ) -> list[str]:
        assert self.root is not None
        spec = userspec or self.userspec
        pairs = [f"{k}={v}" for k, v in {**getattr(self, "env", {}), **env}.items()]
        shell = ["sh", "-c", 'cd "$0" && exec "$@"', getattr(self, "workdir", "/")]
        return ["chroot", f"--userspec={spec}", str(self.root), "env", "-i", *pairs, *shell, *argv]

    def output(self, argv: list[str]) -> str:
        if self.root is not None:
            cmd = self._chroot(argv, {})
        else:
            cmd = ["buildah", "run", "--isolation", "chroot", self.name, "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()

    def run(self, argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
        if self.root is not None:
            cmd = self._chroot(argv, env)
        else:
            flags = [f"--env={k}={v}" for k, v in env.items()]
            cmd = ["buildah", "run", "--isolation", "chroot", f"--volume={self.data}:/data"]
            cmd += [*flags, self.name, "--", *argv]
        proc = subprocess.Popen(
            cmd,
            stdout=log.open("ab"),  # the run scripts of one check share a log
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group: SIGTERM reaches buildah and the daemon
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 60) -> int | None:
        """SIGTERM to the daemon itself, as ``docker stop`` sends it to PID 1: buildah,
        signalled, would SIGKILL its child. Returns the run's exit status (the daemon's)."""
        targets = [p for p in descendants(proc.pid) if b"fastkokoro" in cmdline(p)]
        with contextlib.suppress(ProcessLookupError):
            os.kill(targets[-1], signal.SIGTERM) if targets else os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return None

    def remove(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.stop(proc, 10)
        if self.root is not None:
            for mount in ("data", "dev", "proc"):
                subprocess.run(["umount", "-R", "-l", str(self.root / mount)], capture_output=True)
            subprocess.run(["buildah", "umount", self.name], capture_output=True)
        subprocess.run(["buildah", "rm", self.name], capture_output=True)


def speak(http_port: int, wyoming_port: int) -> dict:
    """One OpenAI SDK request and one Wyoming synthesize; word accuracy and wall time of each."""
    t0 = time.monotonic()
    http = openai_speech(f"http://127.0.0.1:{http_port}/v1", TEXT)
    t1 = time.monotonic()
    wyo = asyncio.run(wyoming_speech("127.0.0.1", wyoming_port, TEXT))
    t2 = time.monotonic()
    return {
        "text": TEXT,
        "openai_audio_s": round(http.seconds, 2),
        "openai_word_accuracy": round(http.accuracy(TEXT), 3),
        "openai_wall_s": round(t1 - t0, 2),
        "wyoming_audio_s": round(wyo.seconds, 2),
        "wyoming_word_accuracy": round(wyo.accuracy(TEXT), 3),
        "wyoming_wall_s": round(t2 - t1, 2),
    }


def engine_lines(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.exists() else ""
    return [ln for ln in text.splitlines() if any(k in ln for k in ENGINE_LINES)]


def check_cpu(
    image: str, work: Path, timeout: float, extra_env: dict[str, str], foreign: bool = False
) -> dict:
    data = Path(tempfile.mkdtemp(prefix="cpu-data-", dir=work))
    seed_data(data, owner=10001)  # the image runs as uid 10001 (chown 10001 ./data)
    http_port, wyoming_port = free_port(), free_port()
    env = {
        "FASTKOKORO_ENGINE_MODEL_SOURCE": "mirror",
        "FASTKOKORO_HTTP_HOST": "127.0.0.1",
        "FASTKOKORO_HTTP_PORT": str(http_port),
        "FASTKOKORO_WYOMING_HOST": "127.0.0.1",
        "FASTKOKORO_WYOMING_PORT": str(wyoming_port),
        **extra_env,
    }
    ctr = Container(image, data, foreign=foreign)
    log = work / "run-cpu.log"
    log.unlink(missing_ok=True)
    try:
        uid, machine = ctr.output(["sh", "-c", "id -u; uname -m"]).split()
        proc = ctr.run(["fastkokoro-wyoming", "serve"], env, log)  # ENTRYPOINT + CMD
        ready = wait_healthy(f"http://127.0.0.1:{http_port}", timeout, lambda: proc.poll() is None)
        result = {"uid": uid, "machine": machine, "ready_s": round(ready, 1)}
        result.update(speak(http_port, wyoming_port))
        result["exit_code_after_sigterm"] = ctr.stop(proc)
        result["engine_lines"] = engine_lines(log)
        result["log_tail"] = log.read_text(errors="replace").splitlines()[-3:]
        return result
    finally:
        ctr.remove()
        shutil.rmtree(data, ignore_errors=True)


class FakeSupervisor(http.server.ThreadingHTTPServer):
    """The Supervisor API's POST /discovery, recorded (bashio posts there)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                owner.posts.append({"path": self.path, "body": json.loads(body or b"{}")})
                reply = json.dumps({"result": "ok", "data": {"uuid": "0" * 32}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def check_addon(
    image: str, work: Path, timeout: float, extra_env: dict[str, str], foreign: bool = False
) -> dict:
    busy = [p for p in (8880, 10210) if port_in_use(p)]
    if busy:  # run.sh fixes the ports, as the add-on's network settings expect
        raise RuntimeError(f"the add-on listens on 8880 and 10210; in use here: {busy}")
    data = Path(tempfile.mkdtemp(prefix="addon-data-", dir=work))
    seed_data(data, owner=None)  # add-ons run as root
    (data / "options.json").write_text(json.dumps(ADDON_OPTIONS))  # what the Supervisor writes
    supervisor = FakeSupervisor()
    env = {
        "SUPERVISOR_API": f"http://127.0.0.1:{supervisor.server_address[1]}",
        "SUPERVISOR_TOKEN": "test-token",
        **extra_env,
    }
    ctr = Container(image, data, foreign=foreign)
    log = work / "run-addon.log"
    log.unlink(missing_ok=True)
    try:
        machine = ctr.output(["uname", "-m"])
        proc = ctr.run([f"{S6}/fastkokoro/run"], env, log)  # shebang: with-contenv bashio
        discovery = ctr.run([f"{S6}/discovery/run"], env, log)
        ready = wait_healthy("http://127.0.0.1:8880", timeout, lambda: proc.poll() is None)
        result = {"machine": machine, "ready_s": round(ready, 1), **speak(8880, 10210)}
        result["discovery_exit"] = discovery.wait(60)
        result["discovery"] = supervisor.posts
        log_text = log.read_text(errors="replace")
        result["started_line"] = next(
            (ln for ln in log_text.splitlines() if "Starting: voice" in ln), None
        )
        result["exit_code_after_sigterm"] = ctr.stop(proc)
        result["engine_lines"] = engine_lines(log)
        return result
    finally:
        ctr.remove()
        supervisor.shutdown()
        shutil.rmtree(data, ignore_errors=True)


def pairs(values: list[str]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fastkokoro-images"))
    parser.add_argument("--report", type=Path)
    parser.add_argument("--image", action="append", default=[], help="kind=image")
    parser.add_argument("--seconds", action="append", default=[], help="kind=build seconds")
    parser.add_argument("--size", action="append", default=[], help="kind=size")
    parser.add_argument("--base", action="append", default=[], help="what=image")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to get healthy")
    parser.add_argument("--arch", help="the images' architecture (reported)")
    parser.add_argument("--qemu-cpu", help="foreign arch: the CPU model qemu-user emulates")
    args = parser.parse_args()
    foreign = args.arch is not None and args.arch != HOST_ARCH.get(os.uname().machine)
    args.work.mkdir(parents=True, exist_ok=True)
    seconds, sizes = pairs(args.seconds), pairs(args.size)
    extra_env = {"QEMU_CPU": args.qemu_cpu} if args.qemu_cpu else {}  # read by qemu-user
    report: dict = {"bases": pairs(args.base), "arch": args.arch, "images": {}}
    if args.qemu_cpu:
        report["qemu_cpu"] = args.qemu_cpu
    checks = {"cpu": check_cpu, "addon": check_addon}
    for kind, image in pairs(args.image).items():
        entry = {
            "image": image,
            "build_s": float(seconds.get(kind, 0)),
            "size": sizes.get(kind, "?"),
        }
        try:
            t0 = time.monotonic()
            entry.update(checks[kind](image, args.work, args.timeout, extra_env, foreign))
            entry["check_s"] = round(time.monotonic() - t0, 1)
        except Exception as exc:  # reported, then the exit status says it failed
            entry["error"] = f"{type(exc).__name__}: {exc}"
        report["images"][kind] = entry
    text = json.dumps(report, indent=2)
    print(text)
    if args.report:
        args.report.write_text(text)
    return 1 if any("error" in e for e in report["images"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
