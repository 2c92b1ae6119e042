"""Command line: ``serve`` (default), ``say`` and ``download``.

Every config key is also a flag (``--http-port``, ``--engine-model-path``); the
few users type most have short forms (``--voice``, ``--model``, ``--voices``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
import typing
import wave
from pathlib import Path
from typing import Any

from .config import Config, key_paths, load_config

_LOGGER = logging.getLogger(__name__)

SUBCOMMANDS = ("serve", "say", "download")

SHORT_FLAGS = {
    "engine.default_voice": ("--voice",),
    "engine.model.path": ("--model",),
    "engine.model.voices": ("--voices",),
    "engine.model.source": ("--source",),
    "engine.runtime.providers": ("--providers",),
    "engine.segmentation.strategy": ("--strategy",),
    "log_level": ("--log-level",),
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration (every key of config/fastkokoro.yaml)")
    for path, tp in key_paths().items():
        flags = ["--" + path.replace(".", "-").replace("_", "-"), *SHORT_FLAGS.get(path, ())]
        if path == "log_level":
            flags = flags[1:]
        kind = (
            "true|false"
            if tp is bool
            else "LIST"
            if typing.get_origin(tp) is tuple
            else ("JSON" if typing.get_origin(tp) is dict else "VALUE")
        )
        group.add_argument(
            *flags,
            dest="cfg:" + path,
            metavar=kind,
            default=None,
            help=argparse.SUPPRESS if path.count(".") > 2 else None,
        )


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg:") and v is not None}
    import os

    path = args.config or os.environ.get("FASTKOKORO_CONFIG")
    return load_config(path, overrides=overrides)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="YAML config file ($FASTKOKORO_CONFIG)"
    )
    parser = argparse.ArgumentParser(
        prog="fastkokoro-wyoming",
        description="Kokoro TTS over Wyoming (Home Assistant) and an OpenAI-compatible API. "
        "Without a command: serve.",
    )
    parser.add_argument("-c", "--config", help="YAML config file ($FASTKOKORO_CONFIG)")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the daemon (default)", parents=[common])
    add_config_flags(serve)
    say = sub.add_parser("say", help="speak text into a WAV file, no server", parents=[common])
    say.add_argument("text", nargs="?", help="text to speak (default: read stdin)")
    say.add_argument("-o", "--output", default="speech.wav", help="WAV file to write")
    say.add_argument("--speed", type=float, default=None)
    say.add_argument("--lang", default=None, help="language (default: the voice's)")
    say.add_argument("--no-progress", action="store_true")
    add_config_flags(say)
    dl = sub.add_parser(
        "download", help="fetch the model and voices into the cache", parents=[common]
    )
    add_config_flags(dl)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .engine.errors import ConfigError, EngineError

    argv = sys.argv[1:] if argv is None else list(argv)
    head = argv[2:3] if argv[:1] in (["-c"], ["--config"]) else argv[:1]  # -c FILE serve ...
    if not head or head[0] not in (*SUBCOMMANDS, "-h", "--help"):
        argv = ["serve", *argv]  # flags alone mean: run the daemon
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        logging.basicConfig(
            level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        if args.command == "say":
            return say(cfg, args)
        if args.command == "download":
            return download(cfg)
        from .daemon import run

        return run(cfg)
    except ConfigError as err:
        print(f"fastkokoro-wyoming: {err}", file=sys.stderr)
        return 2
    except EngineError as err:
        print(f"fastkokoro-wyoming: {err.code}: {err.message}", file=sys.stderr)
        return 1


def download(cfg: Config) -> int:
    from .assets import resolve

    found = resolve(cfg.engine.model)
    print(f"model  {found.model}\nvoices {found.voices}")
    return 0


def say(cfg: Config, args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .assets import load_engine_sync
    from .audio import float_to_pcm16
    from .engine import SynthesisRequest

    text = args.text if args.text is not None else sys.stdin.read()
    # No server, no client to protect: the CLI reads texts of any length.
    engine_cfg = replace(
        cfg.engine, warmup=False, limits=replace(cfg.engine.limits, max_input_chars=10**9)
    )
    engine = load_engine_sync(engine_cfg)
    req = SynthesisRequest(text, voice=cfg.engine.default_voice, lang=args.lang, speed=args.speed)
    prepared = engine.prepare(req)
    progress = None if args.no_progress or len(text) < 400 else _progress()
    t0 = time.perf_counter()
    samples = 0
    out = Path(args.output)

    async def run() -> None:
        nonlocal samples
        with wave.open(str(out), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(engine.sample_rate)
            async for chunk in engine.synthesize(prepared):
                wav.writeframes(float_to_pcm16(chunk))
                samples += chunk.size
                if progress is not None:
                    progress.update(round(chunk.size / engine.sample_rate, 2))

    try:
        asyncio.run(run())
    finally:
        engine.close()
        if progress is not None:
            progress.close()
    took = time.perf_counter() - t0
    audio_s = samples / engine.sample_rate
    print(
        f"{out}: {audio_s:.2f} s of audio in {took:.2f} s "
        f"({audio_s / max(took, 1e-9):.2f}x real time)",
        file=sys.stderr,
    )
    return 0


def _progress() -> Any:
    from tqdm import tqdm

    return tqdm(
        unit="s",
        desc="audio written",
        file=sys.stderr,
        bar_format="{desc}: {n:.1f} s [{elapsed}, {rate_fmt}]",
    )
