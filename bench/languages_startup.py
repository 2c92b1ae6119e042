"""Startup time and memory with one language loaded vs all nine (lazy G2P loading).

Each configuration starts in a fresh Python process that loads the real int8 engine
(``Engine.load_sync``: model, voices, G2P of ``engine.languages`` warmed, model warm-up)
and reports its times and peak RSS (``ru_maxrss``). The parent also times the whole
process, interpreter start and imports included. A last run loads no language at
startup and then warms each one in turn, to show what each costs on its own.

    uv run --extra cpu --extra zh --extra ja python bench/languages_startup.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

ALL = ("a", "b", "j", "z", "e", "f", "h", "i", "p")
CONFIGS = {"one language (a)": ("a",), "one language (e)": ("e",), "all nine": ALL}


def child(languages: tuple[str, ...], breakdown: bool, model: str, voices: str) -> None:
    t0 = time.perf_counter()
    import resource

    import common  # noqa: F401  # puts the repository on sys.path

    from fastkokoro_wyoming.assets import load_engine_sync
    from fastkokoro_wyoming.config import EngineConfig, ModelConfig

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def rss_mb() -> float:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    t_import = time.perf_counter() - t0
    cfg = EngineConfig(model=ModelConfig(path=model, voices=voices), languages=languages)
    t1 = time.perf_counter()
    engine = load_engine_sync(cfg)
    out: dict[str, object] = {
        "import_s": t_import,
        "load_s": time.perf_counter() - t1,
        "peak_mb": peak_mb(),
        "rss_mb": rss_mb(),
        "loaded": engine.g2p.loaded(),
    }
    if breakdown:
        steps = []
        for code in ALL:
            t = time.perf_counter()
            engine.g2p.warm(code)
            steps.append({"lang": code, "s": time.perf_counter() - t, "rss_mb": rss_mb()})
        out["steps"] = steps
        out["peak_after_mb"] = peak_mb()
    engine.close()
    print("RESULT " + json.dumps(out), flush=True)


def run_child(languages: tuple[str, ...], paths: tuple[str, str], breakdown: bool = False) -> dict:
    args = [sys.executable, __file__, "--child", ",".join(languages), "--assets", *paths]
    if breakdown:
        args.append("--breakdown")
    t = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"child {languages} failed:\n{proc.stderr[-4000:]}")
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line[len("RESULT ") :])
    result["wall_s"] = wall
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (median)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--breakdown", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--assets", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(tuple(c for c in args.child.split(",") if c), args.breakdown, *args.assets)
        return

    from common import assets  # fetched/checked once here, not inside the timed processes

    paths = tuple(str(p) for p in assets())

    rows = []
    for name, langs in CONFIGS.items():
        runs = [run_child(langs, paths) for _ in range(args.repeat)]
        med = {k: statistics.median(r[k] for r in runs) for k in ("wall_s", "load_s", "peak_mb")}
        rows.append((name, med, runs[-1]["rss_mb"], runs[-1]["loaded"]))
    print(f"\nStartup of the int8 engine, median of {args.repeat} fresh process(es)")
    print("| languages at startup | process wall s | Engine.load s | peak RSS MB | G2P loaded |")
    print("|---|---|---|---|---|")
    for name, med, _rss, loaded in rows:
        print(
            f"| {name} | {med['wall_s']:.1f} | {med['load_s']:.1f} | {med['peak_mb']:.0f} "
            f"| {''.join(loaded)} |"
        )

    b = run_child((), paths, breakdown=True)
    print("\nNo language at startup, then each warmed in turn (first call loads it)")
    print(f"engine without G2P: load {b['load_s']:.1f} s, RSS {b['rss_mb']:.0f} MB")
    print("| language | load + first call s | RSS after MB | +MB |")
    print("|---|---|---|---|")
    prev = b["rss_mb"]
    for step in b["steps"]:
        print(
            f"| {step['lang']} | {step['s']:.2f} | {step['rss_mb']:.0f} "
            f"| {step['rss_mb'] - prev:+.0f} |"
        )
        prev = step["rss_mb"]
    print(f"peak RSS after all nine: {b['peak_after_mb']:.0f} MB")


if __name__ == "__main__":
    main()
