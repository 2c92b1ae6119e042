"""The Home Assistant add-on in addon/, checked the way the Supervisor reads it.

A config.yaml the Supervisor rejects makes the add-on vanish from the store without an error
in the UI, and a run script that sets a misspelt variable stops the daemon at startup; both
only show on a real Home Assistant. The rules below follow the Supervisor's
supervisor/apps/validate.py and options.py (RE_SCHEMA_ELEMENT, RE_SLUG, docker_ports) and
shared/notes/home-assistant-addon.md. run.sh and the discovery script run here against a
small stand-in for bashio.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from fastkokoro_wyoming.config import Config, env_name, key_paths, load_config

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"

# supervisor/apps/options.py
RE_SCHEMA_ELEMENT = re.compile(
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)
RE_SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")  # supervisor/apps/const.py
RE_PORT_KEY = re.compile(r"^\d+(?:/(?:tcp|udp))?$")  # supervisor/validate.py docker_ports
MAP_TYPES = {  # supervisor/apps/const.py MappingType
    "data", "config", "ssl", "addons", "backup", "share", "media",
    "homeassistant_config", "all_addon_configs", "addon_config",
}  # fmt: skip
ARCHES = {"aarch64", "amd64"}  # the only ones the docs still list
REQUIRED = ("name", "version", "slug", "description", "arch")


@pytest.fixture(scope="module")
def addon() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text(encoding="utf-8"))


def pyproject_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]


def check_value(element: str, value: Any) -> str | None:
    """Why ``value`` does not satisfy one schema element, or None (Supervisor's rules)."""
    m = RE_SCHEMA_ELEMENT.match(element)
    if m is None:
        return f"{element!r} is not a schema type"
    kind = element.rstrip("?").split("(", 1)[0]
    g = m.groupdict()
    if kind == "bool":
        return None if isinstance(value, bool) else "not a bool"
    if kind in ("str", "password", "email", "url", "match", "list") and not isinstance(value, str):
        return "not a string"
    if kind in ("str", "password"):
        lo, hi = g["s_min"] or g["p_min"], g["s_max"] or g["p_max"]
        if (lo and len(value) < int(lo)) or (hi and len(value) > int(hi)):
            return "length out of range"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return "not an int"
        if (g["i_min"] and value < int(g["i_min"])) or (g["i_max"] and value > int(g["i_max"])):
            return "out of range"
    if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
        return "not a number"
    if kind == "port" and not (isinstance(value, int) and 1 <= value <= 65535):
        return "not a port"
    if kind == "list" and value not in g["list"].split("|"):
        return f"not one of {g['list']}"
    if kind == "match" and not re.fullmatch(g["match"], value):
        return f"does not match {g['match']}"
    return None


def check_item(element: str | dict[str, str], item: Any) -> str | None:
    """One list item: a scalar element, or an object whose keys each have one."""
    if not isinstance(element, dict):
        return check_value(element, item)
    if not isinstance(item, dict):
        return "not an object"
    for key, sub in element.items():
        if key not in item:
            if not sub.endswith("?"):
                return f"misses {key!r}"
        elif why := check_value(sub, item[key]):
            return f"{key}: {why}"
    stray = set(item) - set(element)
    return f"unknown keys {sorted(stray)}" if stray else None


def check_options(schema: dict[str, Any], options: dict[str, Any]) -> list[str]:
    problems = []
    for key, value in options.items():
        if key not in schema:
            problems.append(f"{key}: has a default but no schema")
            continue
        element = schema[key]
        items = value if isinstance(element, list) else [value]
        if isinstance(element, list) and not isinstance(value, list):
            problems.append(f"{key}: schema is a list, value is not")
            continue
        for item in items:
            why = check_item(element[0] if isinstance(element, list) else element, item)
            if why:
                problems.append(f"{key}: {item!r} {why}")
    return problems


def test_required_keys_slug_arch_and_version(addon):
    assert [k for k in REQUIRED if not addon.get(k)] == []
    assert RE_SLUG.match(addon["slug"])
    assert addon["arch"] and set(addon["arch"]) <= ARCHES
    assert addon["version"] == pyproject_version(), "the Dockerfile installs this version"
    assert re.match(r"^https?://\S+$", addon["url"])
    assert all(v is not None for v in addon.values()), "an explicit null drops the add-on"


def test_wyoming_add_on_settings(addon):
    assert addon["init"] is False, "s6-overlay v3 base images do not start with Docker's init"
    assert "wyoming" in addon["discovery"], "Supervisor answers 403 to undeclared discovery"
    for entry in addon.get("map", []):
        kind = entry["type"] if isinstance(entry, dict) else entry.split(":")[0]
        assert kind in MAP_TYPES
    assert "*.onnx" in addon["backup_exclude"]


def test_ports_are_the_daemons_and_described(addon):
    ports = addon["ports"]
    assert all(RE_PORT_KEY.match(k) for k in ports)
    assert all(v is None or (isinstance(v, int) and 1 <= v <= 65535) for v in ports.values())
    defaults = Config()
    assert set(ports) == {f"{defaults.wyoming.port}/tcp", f"{defaults.http.port}/tcp"}
    assert set(addon["ports_description"]) == set(ports)


def test_schema_types_are_valid(addon):
    for key, element in addon["schema"].items():
        elements = element if isinstance(element, list) else [element]
        assert len(elements) == 1, key
        nested = elements[0] if isinstance(elements[0], dict) else {key: elements[0]}
        for name, sub in nested.items():  # a list of objects: one level of nesting
            assert isinstance(sub, str) and RE_SCHEMA_ELEMENT.match(sub), f"{key}.{name}: {sub!r}"


def test_defaults_satisfy_schema_and_optional_means_no_default(addon):
    schema, options = addon["schema"], addon["options"]
    assert check_options(schema, options) == []
    for key, element in schema.items():
        first = element[0] if isinstance(element, list) else element
        optional = isinstance(first, str) and first.endswith("?")
        assert (key in options) != optional, f"{key}: required needs a default, optional none"


def test_schema_choices_are_values_the_daemon_accepts(addon):
    schema = addon["schema"]
    for value in re.match(r"list\((.*)\)", schema["strategy"]).group(1).split("|"):
        assert load_config(environ={env_name("engine.segmentation.strategy"): value})
    for value in re.match(r"list\((.*)\)", schema["log_level"]).group(1).split("|"):
        assert load_config(environ={"FASTKOKORO_LOG_LEVEL": value.upper()})
    for value in re.match(r"list\((.*)\)", schema["model_source"]).group(1).split("|"):
        assert load_config(environ={"FASTKOKORO_ENGINE_MODEL_SOURCE": value})
    from fastkokoro_wyoming.engine.text.languages import LanguageTable

    for code in re.match(r"list\((.*)\)", schema["languages"][0]).group(1).split("|"):
        assert LanguageTable().resolve(code).extra in (None, "zh"), "zh is the add-on's extra"


def test_translations_cover_every_option_and_port(addon):
    tr = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text(encoding="utf-8"))
    assert set(tr["configuration"]) == set(addon["schema"])
    for key, entry in tr["configuration"].items():
        assert entry.get("name") and entry.get("description"), key
    assert set(tr["network"]) == set(addon["ports"])


def test_changelog_and_docs(addon):
    changelog = (ADDON / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog")
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == addon["version"]
    docs = (ADDON / "DOCS.md").read_text(encoding="utf-8")
    for key in addon["schema"]:
        assert f"### Option: `{key}`" in docs


def test_repository_yaml():
    repo = yaml.safe_load((ROOT / "repository.yaml").read_text(encoding="utf-8"))
    assert repo["name"] and repo["url"] and repo["maintainer"]


# --- run.sh: every option reaches a real config key ---------------------------------------

ASSIGN = re.compile(r"^\s*(FASTKOKORO_[A-Z0-9_]+)=(.*)$")
OPTION = re.compile(r"bashio::config(?:\.\w+)? '(\w+)'")


def run_sh_assignments() -> list[tuple[str, str]]:
    text = (ADDON / "run.sh").read_text(encoding="utf-8")
    return [m.groups() for line in text.splitlines() if (m := ASSIGN.match(line))]


def test_run_sh_maps_every_option_to_an_existing_config_key(addon):
    valid = {env_name(path) for path in key_paths()}
    assignments = run_sh_assignments()
    assert [name for name, _ in assignments if name not in valid] == []
    option_to_var = {m.group(1): name for name, value in assignments if (m := OPTION.search(value))}
    assert set(option_to_var) == set(addon["schema"]), "an option run.sh ignores, or a stray"
    assert len(set(option_to_var.values())) == len(option_to_var), "two options, one variable"


def test_run_sh_fixes_ports_cache_and_provider():
    fixed = {name: value for name, value in run_sh_assignments() if "bashio" not in value}
    assert fixed == {
        "FASTKOKORO_WYOMING_PORT": "10210",
        "FASTKOKORO_HTTP_PORT": "8880",
        "FASTKOKORO_ENGINE_MODEL_CACHE_DIR": "/data",
        "FASTKOKORO_ENGINE_RUNTIME_PROVIDERS": "cpu",
    }


FAKE_BASHIO = r"""
# Stand-in for bashio: options from $OPTIONS (JSON), printed the way bashio's jq query does.
bashio::config() {
    "$PYTHON" - "$OPTIONS" "$1" <<'PY'
import json, sys
value = json.load(open(sys.argv[1])).get(sys.argv[2])
if value is None:
    out = "null"
elif isinstance(value, bool):
    out = "true" if value else "false"
elif isinstance(value, list):  # bashio: jq -c, one item a line (objects as compact JSON)
    out = "\n".join(json.dumps(v, separators=(",", ":")) if isinstance(v, dict) else str(v)
                    for v in value)
else:
    out = str(value)
sys.stdout.write(out)
PY
}
bashio::config.has_value() {
    local value
    value=$(bashio::config "$1")
    [[ -n "${value}" && "${value}" != "null" ]]
}
bashio::config.true() { [[ "$(bashio::config "$1")" == "true" ]]; }
bashio::log.info() { echo "INFO: $*" >&2; }
bashio::log.warning() { echo "WARNING: $*" >&2; }
bashio::log.error() { echo "ERROR: $*" >&2; }
bashio::var.json() {
    "$PYTHON" -c 'import json, sys; a = sys.argv[1:]
print(json.dumps(dict(zip(a[::2], a[1::2]))))' "$@"
}
bashio::discovery() { printf '%s %s\n' "$1" "$2" >>"$DISCOVERY_LOG"; }
"""


def _fake_env(tmp_path: Path, options: dict[str, Any]) -> dict[str, str]:
    (tmp_path / "options.json").write_text(json.dumps(options))
    (tmp_path / "bashio.sh").write_text(FAKE_BASHIO)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    daemon = bin_dir / "fastkokoro-wyoming"
    daemon.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)},"
        " open(os.environ['CAPTURE'], 'w'))\n"
    )
    daemon.chmod(0o755)
    host = bin_dir / "hostname"
    host.write_text("#!/bin/sh\necho local-fastkokoro\n")
    host.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FASTKOKORO_")}
    env.update(
        PATH=f"{bin_dir}:{env['PATH']}",
        PYTHON=sys.executable,
        OPTIONS=str(tmp_path / "options.json"),
        CAPTURE=str(tmp_path / "capture.json"),
        DISCOVERY_LOG=str(tmp_path / "discovery.log"),
        LEXICON_FILE=str(tmp_path / "lexicon.yaml"),
    )
    return env


def run_addon(tmp_path: Path, options: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    env = _fake_env(tmp_path, options)
    script = f'set -euo pipefail; source "{tmp_path}/bashio.sh"; source "{ADDON}/run.sh"'
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=60)
    captured = json.loads((tmp_path / "capture.json").read_text())
    return captured["argv"], captured["env"]


def test_run_sh_with_default_options_starts_the_daemon_configured(addon, tmp_path):
    argv, env = run_addon(tmp_path, addon["options"])
    assert argv == ["serve"]
    assert env["HF_HOME"] == "/data/hf"
    cfg = load_config(environ={k: v for k, v in env.items() if k.startswith("FASTKOKORO_")})
    assert cfg.engine.default_voice == addon["options"]["voice"]
    assert cfg.engine.languages == tuple(addon["options"]["languages"])
    assert cfg.engine.segmentation.strategy == addon["options"]["strategy"]
    assert cfg.engine.runtime.intra_op_threads == addon["options"]["threads"]
    assert cfg.engine.runtime.providers == ("cpu",)
    assert cfg.engine.model.source == addon["options"]["model_source"]
    assert cfg.engine.model.cache_dir == "/data"
    assert cfg.wyoming.zeroconf is False
    assert (cfg.wyoming.port, cfg.http.port) == (10210, 8880)
    assert cfg.http.api_key is None
    assert cfg.log_level == "INFO"
    assert cfg.engine.lexicon is None  # an empty list: no file, no lexicon


def test_run_sh_with_an_options_file_from_before_the_list_options(addon, tmp_path):
    """An options.json written before ``lexicon`` and ``presets`` existed (bashio then
    prints null for them): the daemon starts with neither."""
    options = {k: v for k, v in addon["options"].items() if k not in ("lexicon", "presets")}
    _, env = run_addon(tmp_path, options)
    assert env.get("FASTKOKORO_ENGINE_VOICES_PRESETS", "") == ""
    assert env.get("FASTKOKORO_ENGINE_LEXICON", "") == ""
    cfg = load_config(environ={k: v for k, v in env.items() if k.startswith("FASTKOKORO_")})
    assert cfg.engine.voices.presets == {} and cfg.engine.lexicon is None


def test_run_sh_with_every_option_changed(addon, tmp_path):
    options = {
        "voice": "af_bella(2)+af_sky(1)",
        "languages": ["a", "z", "f"],
        "strategy": "adaptive",
        "threads": 3,
        "model_source": "mirror",
        "zeroconf": True,
        "api_key": "s3cret with spaces",
        "log_level": "debug",
        "lexicon": [
            {"word": "HVAC", "phonemes": "ˈAʧvæk"},
            {"word": "Hyundai", "phonemes": "hjˈʌndA"},
            {"word": "Renault", "phonemes": "ʁəno", "language": "fr-FR"},
        ],
        "presets": [
            {"name": "grandma", "voice": "af_heart", "speed": 0.85, "volume": "+2dB"},
            {"name": "duo", "voice": "af_heart:0.7,af_sky:0.3", "language": "en-GB"},
        ],
    }
    assert set(options) == set(addon["schema"]), "update this test with the schema"
    assert check_options(addon["schema"], options) == []
    _, env = run_addon(tmp_path, options)
    lexicon = yaml.safe_load(Path(env["FASTKOKORO_ENGINE_LEXICON"]).read_text(encoding="utf-8"))
    assert lexicon == {"a": {"HVAC": "ˈAʧvæk", "Hyundai": "hjˈʌndA"}, "fr-FR": {"Renault": "ʁəno"}}
    cfg = load_config(environ={k: v for k, v in env.items() if k.startswith("FASTKOKORO_")})
    assert cfg.engine.default_voice == "af_bella(2)+af_sky(1)"
    assert cfg.engine.languages == ("a", "z", "f")
    assert cfg.engine.segmentation.strategy == "adaptive"
    assert cfg.engine.runtime.intra_op_threads == 3
    assert cfg.engine.model.source == "mirror"
    assert cfg.wyoming.zeroconf is True
    assert cfg.http.api_key == "s3cret with spaces"
    assert cfg.log_level == "DEBUG"
    presets = cfg.engine.voices.presets
    assert (presets["grandma"].voice, presets["grandma"].speed) == ("af_heart", 0.85)
    assert presets["grandma"].volume == "+2dB"
    assert presets["duo"].voice == "af_heart:0.7,af_sky:0.3"
    assert (presets["duo"].language, presets["duo"].speed) == ("en-GB", None)


# --- s6 services and discovery ------------------------------------------------------------


def test_s6_services_are_wired():
    assert (S6 / "fastkokoro" / "type").read_text().strip() == "longrun"
    assert (S6 / "fastkokoro" / "dependencies.d" / "base").exists()
    assert (S6 / "discovery" / "type").read_text().strip() == "oneshot"
    assert (S6 / "discovery" / "dependencies.d" / "fastkokoro").exists()
    assert (S6 / "discovery" / "up").read_text().strip() == "/etc/s6-overlay/s6-rc.d/discovery/run"
    assert {p.name for p in (S6 / "user" / "contents.d").iterdir()} == {"fastkokoro", "discovery"}
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert "COPY run.sh /etc/s6-overlay/s6-rc.d/fastkokoro/run" in dockerfile
    for script in (ADDON / "run.sh", S6 / "discovery" / "run", S6 / "fastkokoro" / "finish"):
        assert script.read_text().startswith("#!/command/with-contenv bashio\n"), script
        subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck():
    scripts = [ADDON / "run.sh", S6 / "discovery" / "run", S6 / "fastkokoro" / "finish"]
    subprocess.run(["shellcheck", *map(str, scripts)], check=True)


def test_discovery_waits_for_describe_then_posts_the_wyoming_uri(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = (S6 / "discovery" / "run").read_text()
    assert f"readonly PORT={Config().wyoming.port}" in script
    (tmp_path / "discovery").write_text(script.replace("PORT=10210", f"PORT={port}"))
    env = _fake_env(tmp_path, {})
    proc = subprocess.Popen(
        ["bash", "-c", f'source "{tmp_path}/bashio.sh"; source "{tmp_path}/discovery"'],
        env=env,
    )
    time.sleep(1.2)  # a few refused connections first, as while the model loads
    assert proc.poll() is None and not (tmp_path / "discovery.log").exists()

    def serve(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            assert json.loads(conn.makefile().readline())["type"] == "describe"
            conn.sendall(b'{"type": "info", "data_length": 2}\n{}')

    with socket.create_server(("127.0.0.1", port)) as server:
        thread = threading.Thread(target=serve, args=(server,), daemon=True)
        thread.start()
        assert proc.wait(timeout=30) == 0
        thread.join(timeout=5)
    service, config = (tmp_path / "discovery.log").read_text().strip().split(" ", 1)
    assert service == "wyoming"
    assert json.loads(config) == {"uri": f"tcp://local-fastkokoro:{port}"}


# --- Dockerfile and its pinned requirements -----------------------------------------------


def _requirement_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]


def test_requirements_match_the_lock():
    req = (ADDON / "requirements.txt").read_text(encoding="utf-8")
    command = re.search(r"^#\s+(uv export .*)$", req, re.M).group(1)
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    args = command.split()[1:]
    out_at = args.index("-o")
    del args[out_at : out_at + 2]
    fresh = subprocess.run(
        [uv, *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert _requirement_lines(req) == _requirement_lines(fresh), (
        f"addon/requirements.txt is stale: run `{command}`"
    )


def test_dockerfile_installs_this_version_with_the_exported_extras(addon):
    dockerfile = (ADDON / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BUILD_VERSION=(\S+)$", dockerfile, re.M).group(1) == addon["version"]
    spec = re.search(r'"fastkokoro-wyoming\[([\w,]+)\]==\$\{BUILD_VERSION\}"', dockerfile)
    assert spec, "the add-on installs the package at the add-on's version"
    req = (ADDON / "requirements.txt").read_text(encoding="utf-8")
    exported = set(re.findall(r"--extra (\w+)", req.splitlines()[1]))
    assert set(spec.group(1).split(",")) == exported
    assert "cpu" in exported and "gpu" not in exported
    for src in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (ADDON / src).exists(), src
    assert re.search(r"^ARG BUILD_FROM=\S+-base-debian:\S+$", dockerfile, re.M)
    assert "127.0.0.1:8880/health" in dockerfile


def _lock_packages() -> dict[tuple[str, str], dict[str, Any]]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    return {(p["name"], p["version"]): p for p in lock["package"] if "version" in p}


# sdists that are pure Python (nothing to compile on the device)
PURE_PYTHON_SDISTS = {"docopt", "jieba"}


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_every_requirement_installs_without_compiling(addon, machine):
    """Each add-on arch gets a wheel for every pinned package (CPython 3.12, glibc)."""
    from packaging.markers import Marker

    arch = {"x86_64": "amd64", "aarch64": "aarch64"}[machine]
    assert arch in addon["arch"]
    environment = {
        "python_full_version": "3.12.8",
        "python_version": "3.12",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": machine,
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
    }
    packages = _lock_packages()
    missing = []
    for line in _requirement_lines((ADDON / "requirements.txt").read_text(encoding="utf-8")):
        spec, _, marker = line.partition(" ; ")
        if marker and not Marker(marker).evaluate(environment):
            continue
        name, version = spec.split("==")
        wheels = [w["url"].rsplit("/", 1)[1] for w in packages[(name, version)].get("wheels", [])]
        ok = any(
            w.endswith("-none-any.whl")
            or (
                re.search(r"-(cp312-cp312|cp3\d+-abi3|py3-none)-", w)
                and re.search(rf"manylinux\w*_{machine}", w)
            )
            for w in wheels
        )
        if not ok and name not in PURE_PYTHON_SDISTS:
            missing.append(f"{name}=={version}")
    assert missing == []


# --- images -------------------------------------------------------------------------------


def read_png(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(tag + body) & 0xFFFFFFFF == crc, f"{path.name}: bad CRC in {tag}"
        chunks.append(tag)
        idat += body if tag == b"IDAT" else b""
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    raw = zlib.decompress(idat)
    assert len(raw) == height * (1 + width * channels * depth // 8)
    return width, height


def test_icon_and_logo_are_valid_pngs():
    width, height = read_png(ADDON / "icon.png")
    assert width == height and 64 <= width <= 256
    width, height = read_png(ADDON / "logo.png")
    assert width > height and width <= 500
