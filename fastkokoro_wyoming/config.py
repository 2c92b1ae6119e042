"""Configuration: typed, frozen, parsed once.

Precedence: defaults < YAML file < ``FASTKOKORO_*`` variables < command-line flags.
Variable names follow key paths (``http.port`` -> ``FASTKOKORO_HTTP_PORT``), and the
names fastkokoro 0.7.0 used for the same settings keep working. An unknown key, a
wrong type or an impossible value stops startup with one line naming the key and
where it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .engine.errors import ConfigError
from .engine.model.presets import validate_presets
from .engine.settings import (
    DEFAULT_CACHE,
    DecoderConfig,
    EngineConfig,
    LimitsConfig,
    ModelConfig,
    PresetConfig,
    RuntimeConfig,
    SegmentationConfig,
    VoicesConfig,
    choices,
)

__all__ = [
    "DEFAULT_CACHE",
    "Config",
    "DecoderConfig",
    "EngineConfig",
    "HttpConfig",
    "LimitsConfig",
    "ModelConfig",
    "PresetConfig",
    "RuntimeConfig",
    "SegmentationConfig",
    "VoicesConfig",
    "WyomingConfig",
    "load_config",
]

ENV_PREFIX = "FASTKOKORO_"


AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# OpenAI's built-in voices -> Kokoro voices. Kokoro ships five of the same names
# (af_alloy, am_echo, bm_fable, af_nova, am_onyx); the rest get a voice of the same
# gender and a similar character.
OPENAI_VOICE_MAP: dict[str, str] = {
    "alloy": "af_alloy", "ash": "am_adam", "ballad": "bm_lewis", "coral": "af_heart",
    "echo": "am_echo", "fable": "bm_fable", "onyx": "am_onyx", "nova": "af_nova",
    "sage": "af_sarah", "shimmer": "af_sky", "verse": "am_michael", "marin": "af_bella",
    "cedar": "am_eric",
}  # fmt: skip


@dataclass(frozen=True)
class HttpConfig:
    """The ``http`` section: the OpenAI-compatible API, and all it reads of the config."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 8880
    api_key: str | None = None
    # catalogs (models, voices, openapi) readable without the key: Open WebUI fetches them
    # without sending its key, and they reveal nothing a client could not guess
    public_catalog: bool = True
    cors_origins: tuple[str, ...] = ("*",)
    max_body_bytes: int = 1_048_576
    default_format: AudioFormat = "mp3"
    # Slow or greedy clients (http_api/connections.py): a request's head must arrive
    # within header_timeout_s of its first byte (of the connection, for the first), its
    # body within body_timeout_s of the head; connections beyond the caps get 503.
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 512
    max_connections_per_peer: int = 64  # 0: no per-address cap (behind a proxy)
    drain_timeout_s: float = 10.0  # on shutdown, time left to responses in flight
    voice_map: dict[str, str] = field(default_factory=lambda: dict(OPENAI_VOICE_MAP))


@dataclass(frozen=True)
class WyomingConfig:
    """The ``wyoming`` section: the Home Assistant listener, and all it reads of the config."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = 10210
    zeroconf: bool = True
    zeroconf_name: str = ""  # "": fastkokoro-<host name> (renamed -2, -3... on a collision)
    program_name: str = "kokoro"
    samples_per_chunk: int = 1024
    idle_timeout_s: float = 120.0  # close a connection with no event and no synthesis
    max_event_bytes: int = 1_048_576  # data/payload of one client event
    drain_timeout_s: float = 10.0  # on shutdown, time left to requests in flight
    read_timeout_s: float = 5.0  # an event whose first byte came must be complete by then
    max_connections: int = 128
    max_connections_per_peer: int = 32  # 0: no per-address cap (behind a proxy)
    # A stream's first words start at a clause (, ; : dash) once this many are written,
    # not only at its first sentence end (0: sentence ends only). wyoming_api/pacing.py
    first_clause_words: int = 6
    # No new text for this long (an LLM calling a tool): speak what is written (0: never)
    stall_timeout_s: float = 1.0


@dataclass(frozen=True)
class Config:
    """The whole configuration; each part of the daemon is given only its own section."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    log_level: LogLevel = "INFO"


# fastkokoro 0.7.0 variable -> our key path
LEGACY_ENV = {
    "FASTKOKORO_MODEL_PATH": "engine.model.path",
    "FASTKOKORO_VOICES_PATH": "engine.model.voices",
    "FASTKOKORO_CACHE_DIR": "engine.model.cache_dir",
    "FASTKOKORO_MODEL_REPO": "engine.model.repo",
    "FASTKOKORO_MODEL_FILE": "engine.model.file",
    "FASTKOKORO_VOICES_FILE": "engine.model.voices_file",
    "FASTKOKORO_DEFAULT_VOICE": "engine.default_voice",
    "FASTKOKORO_ONNX_PROVIDERS": "engine.runtime.providers",
    "FASTKOKORO_ONNX_PROVIDER_OPTIONS": "engine.runtime.provider_options",
    "FASTKOKORO_ONNX_INTRA_OP_NUM_THREADS": "engine.runtime.intra_op_threads",
    "FASTKOKORO_ONNX_INTER_OP_NUM_THREADS": "engine.runtime.inter_op_threads",
    "FASTKOKORO_ONNX_GRAPH_OPTIMIZATION_LEVEL": "engine.runtime.graph_optimization",
    "FASTKOKORO_STREAM_STRATEGY": "engine.segmentation.strategy",
    "FASTKOKORO_WARMUP": "engine.warmup",
    "FASTKOKORO_HOST": "http.host",
    "FASTKOKORO_PORT": "http.port",
    "FASTKOKORO_CORS_ALLOW_ORIGINS": "http.cors_origins",
    "FASTKOKORO_LOG_LEVEL": "log_level",
}


def key_paths(cls: type = Config, prefix: str = "") -> dict[str, Any]:
    """Every leaf key path (``engine.model.path``) -> its type annotation."""
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = f"{prefix}{f.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(key_paths(tp, path + "."))
        else:
            out[path] = tp
    return out


def env_name(path: str) -> str:
    return ENV_PREFIX + path.replace(".", "_").upper()


def load_config(
    yaml_path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the :class:`Config`: defaults < YAML < environment < ``overrides`` (CLI)."""
    leaves = key_paths()
    values: dict[str, tuple[Any, str]] = {}  # path -> (raw value, where it came from)
    if yaml_path is not None:
        values.update(_from_yaml(Path(yaml_path), leaves))
    values.update(_from_env(os.environ if environ is None else environ, leaves))
    for path, raw in (overrides or {}).items():
        if path not in leaves:
            raise ConfigError(f"{path}: unknown key (from command line)")
        if raw is not None:
            values[path] = (raw, "command line")
    tree: dict[str, Any] = {}
    for path, (raw, source) in values.items():
        value = _coerce(raw, leaves[path], path, source)
        node = tree
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = (value, source)
    config = _build(Config, tree, "")
    validate(config)
    return config


def _from_yaml(path: Path, leaves: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"config file {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: top level must be a mapping")
    out: dict[str, tuple[Any, str]] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            path_ = f"{prefix}{key}"
            if path_ in leaves:
                out[path_] = (value, str(path))
            elif isinstance(value, dict) and any(k.startswith(path_ + ".") for k in leaves):
                walk(value, path_ + ".")
            else:
                raise ConfigError(f"{path_}: unknown key (in {path})")

    walk(data, "")
    return out


def _from_env(environ: Mapping[str, str], leaves: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    by_env = {env_name(p): p for p in leaves}
    out: dict[str, tuple[Any, str]] = {}
    for name, path in LEGACY_ENV.items():  # old names first; new names win
        if environ.get(name, "") != "" and name not in by_env:
            out[path] = (environ[name], f"${name}")
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or value == "":
            continue
        if name in by_env:
            out[by_env[name]] = (value, f"${name}")
        elif name not in LEGACY_ENV and name not in ("FASTKOKORO_CONFIG", "FASTKOKORO_TEST_ASSETS"):
            raise ConfigError(f"${name}: unknown variable (no such config key)")
    return out


def _coerce(raw: Any, tp: Any, path: str, source: str) -> Any:
    """A YAML/env/CLI value -> the annotated type, or a ConfigError naming key and source."""
    where = f"{path} (from {source})"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if raw is None or (isinstance(raw, str) and raw.lower() in ("null", "none", "~")):
            return None
        return _coerce(raw, next(a for a in args if a is not type(None)), path, source)
    if origin is typing.Literal:
        allowed = choices(tp)
        match = [a for a in allowed if isinstance(raw, str) and a.lower() == raw.strip().lower()]
        if not match:
            raise ConfigError(f"{where}: {raw!r} is not one of {', '.join(allowed)}")
        return match[0]
    try:
        if tp is bool:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, str) and raw.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(raw, str) and raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError("expected an integer")
            return int(raw)
        if tp is float:
            if isinstance(raw, bool):
                raise ValueError("expected a number")
            return float(raw)
        if tp is str:
            if isinstance(raw, (dict, list)):
                raise ValueError("expected a string")
            return str(raw)
        if origin is tuple:
            if isinstance(raw, str):
                raw = json.loads(raw) if raw.strip().startswith("[") else raw.split(",")
            if not isinstance(raw, list | tuple):
                raise ValueError("expected a list")
            return tuple(str(x).strip() for x in raw if str(x).strip())
        if origin is dict:
            if isinstance(raw, str):
                raw = json.loads(raw)
            records = len(args) == 2 and dataclasses.is_dataclass(args[1])
            if records and isinstance(raw, list):  # the add-on's form: [{name: ..., ...}]
                raw = _named(raw, path, source)
            if not isinstance(raw, dict):
                raise ValueError("expected a mapping")
            if records:
                return {str(k): _record(v, args[1], f"{path}.{k}", source) for k, v in raw.items()}
            return dict(raw)
    except (ValueError, TypeError) as err:
        msg = str(err) if "expected" in str(err) else f"expected {getattr(tp, '__name__', tp)}"
        raise ConfigError(f"{where}: {msg}, got {raw!r}") from err
    raise ConfigError(f"{where}: unsupported type {tp}")


def _named(items: list[Any], path: str, source: str) -> dict[str, Any]:
    """``[{"name": "a", ...}, ...]`` -> ``{"a": {...}}`` (a list of records, each named)."""
    out: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{path} (from {source}): each entry needs a 'name', got {item!r}")
        out[item["name"]] = {k: v for k, v in item.items() if k != "name"}
    return out


def _record(raw: Any, cls: Any, path: str, source: str) -> Any:
    """One entry of a mapping of records (``engine.voices.presets.NAME``): a mapping of
    the record's fields, each coerced to its annotation; unknown or missing keys named."""
    if isinstance(raw, str):  # shorthand: just the voice (its first field)
        raw = {dataclasses.fields(cls)[0].name: raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} (from {source}): expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in known:
            keys = ", ".join(sorted(known))
            raise ConfigError(f"{path}.{key}: unknown key (from {source}); keys: {keys}")
    for f in dataclasses.fields(cls):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if no_default and raw.get(f.name) is None:
            raise ConfigError(f"{path}.{f.name}: required (from {source})")
    values = {k: _coerce(v, hints[k], f"{path}.{k}", source) for k, v in raw.items()}
    return cls(**values)


def _build(cls: type, tree: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], tree.get(f.name, {}), f"{prefix}{f.name}.")
        elif f.name in tree:
            kwargs[f.name] = tree[f.name][0]
    return cls(**kwargs)


def _check(ok: bool, path: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"{path}: {msg}")


def validate(cfg: Config) -> None:
    """Impossible values, named by key (sources were checked for type already)."""
    e = cfg.engine
    _check(
        4 <= e.segmentation.first_segment_tokens <= 510,
        "engine.segmentation.first_segment_tokens",
        "must be 4-510",
    )
    _check(
        8 <= e.segmentation.chunk_tokens <= 510, "engine.segmentation.chunk_tokens", "must be 8-510"
    )
    _check(
        0 <= e.segmentation.boundary_silence_ms <= 5000,
        "engine.segmentation.boundary_silence_ms",
        "must be 0-5000",
    )
    _check(1 <= e.segmentation.lookahead <= 16, "engine.segmentation.lookahead", "must be 1-16")
    _check(
        16 <= e.segmentation.max_tokens <= 510, "engine.segmentation.max_tokens", "must be 16-510"
    )
    _check(e.runtime.intra_op_threads >= 0, "engine.runtime.intra_op_threads", "must be >= 0")
    _check(e.runtime.inter_op_threads >= 0, "engine.runtime.inter_op_threads", "must be >= 0")
    _check(0 <= e.runtime.workers <= 64, "engine.runtime.workers", "must be 0 (auto) to 64")
    _check(bool(e.runtime.providers), "engine.runtime.providers", "must not be empty")
    _check(e.idle_unload_s >= 0, "engine.idle_unload_s", "must be >= 0 (0: never unload)")
    d = e.decoder
    _check(2 <= d.first_window <= 400, "engine.decoder.first_window", "must be 2-400 frames")
    _check(1.0 <= d.window_growth <= 8.0, "engine.decoder.window_growth", "must be 1-8")
    _check(
        d.first_window <= d.max_window <= 2000,
        "engine.decoder.max_window",
        "must be first_window-2000 frames",
    )
    _check(1 <= d.context <= 32, "engine.decoder.context", "must be 1-32 frames")
    _check(1 <= d.window_lookahead <= 16, "engine.decoder.window_lookahead", "must be 1-16")
    _check(e.limits.max_input_chars >= 1, "engine.limits.max_input_chars", "must be >= 1")
    _check(e.limits.max_streams >= 1, "engine.limits.max_streams", "must be >= 1")
    _check(e.limits.max_queue >= 1, "engine.limits.max_queue", "must be >= 1")
    _check(e.limits.bulk_realtime_share > 0, "engine.limits.bulk_realtime_share", "must be > 0")
    for key in ("interactive_max_wait_s", "bulk_max_wait_s", "interactive_lead_s"):
        _check(getattr(e.limits, key) >= 0, f"engine.limits.{key}", "must be >= 0")
    if e.loudness_lufs is not None:
        _check(-40 <= e.loudness_lufs <= -6, "engine.loudness_lufs", "must be -40 to -6 or null")
    validate_presets(e.voices.presets, cfg.http.voice_map)
    for section in ("http", "wyoming"):
        part = getattr(cfg, section)
        timeouts = ("header_timeout_s", "body_timeout_s") if section == "http" else ()
        for key in (*timeouts, "read_timeout_s", "drain_timeout_s"):
            if hasattr(part, key):
                _check(getattr(part, key) > 0, f"{section}.{key}", "must be > 0 seconds")
        _check(part.max_connections >= 1, f"{section}.max_connections", "must be >= 1")
        _check(
            part.max_connections_per_peer >= 0,
            f"{section}.max_connections_per_peer",
            "must be >= 0 (0: no per-address cap)",
        )
    for name, port in (("http.port", cfg.http.port), ("wyoming.port", cfg.wyoming.port)):
        _check(0 <= port <= 65535, name, f"{port} is not a TCP port")
    _check(
        0 <= cfg.wyoming.first_clause_words <= 1000,
        "wyoming.first_clause_words",
        "must be 0 (off) to 1000",
    )
    _check(cfg.wyoming.stall_timeout_s >= 0, "wyoming.stall_timeout_s", "must be >= 0 (0: off)")
    _check(
        64 <= cfg.wyoming.samples_per_chunk <= 48000,
        "wyoming.samples_per_chunk",
        "must be 64-48000",
    )
