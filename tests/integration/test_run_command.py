"""README's run command installs what running needs, not the test suite.

``uv run --extra cpu fastkokoro-wyoming`` resolves the project's dependencies, its ``cpu``
extra and the default dependency groups: with ``default-groups = []`` no test tool is in
that set, while ``--group dev`` (README's test command, ``.ci/run``) still brings them.
Read from ``uv.lock`` through ``uv export --frozen`` (what ``uv run`` would install); about
0.3 s, no network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_TOOLS = {
    "pytest",
    "pytest-asyncio",
    "selenium",
    "schemathesis",
    "pocketsphinx",
    "ruff",
    "pyright",
    "hypothesis",
    "openai",
    "kubernetes-validate",
}


def _installed_by(*args: str) -> set[str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    out = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "--no-emit-project", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = set()
    for line in out.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "-")):
            names.add(line.split("==")[0].split(" ")[0].split(";")[0].lower())
    return names


def test_the_run_command_installs_no_test_tools() -> None:
    run = _installed_by("--extra", "cpu")
    assert {"onnxruntime", "onnx", "wyoming", "aiohttp", "zeroconf", "misaki"} <= run
    assert not run & TEST_TOOLS, sorted(run & TEST_TOOLS)
    assert "openvino" not in run  # an extra (engine.runtime.backend), never the base install
    assert "openvino" in _installed_by("--extra", "cpu", "--extra", "openvino")


def test_the_test_command_still_gets_the_test_tools() -> None:
    test = _installed_by("--group", "dev", "--extra", "cpu")
    assert {"pytest", "pytest-asyncio", "pocketsphinx", "openai", "ruff"} <= test
