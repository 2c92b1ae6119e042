"""Shared bits for the benchmarks: texts, the real assets, small statistics."""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from fetch_assets import asset_dir  # noqa: E402

from fastkokoro_wyoming.assets import fetch_mirror  # noqa: E402

TEXTS = {
    "fox": "The quick brown fox jumps over the lazy dog.",  # the 9-word sentence
    "short": "Turn on the kitchen lights, please.",  # ~6 words: an HA reply
    "medium": (
        "The forecast for today is mostly sunny with a high of seventy two degrees. "
        "A light breeze will come from the west in the afternoon. "
        "Tonight will be clear and cool, so you may want a jacket if you go out."
    ),  # ~40 words
    "long": " ".join(
        [
            "Once upon a time, in a small village at the edge of a great forest, there lived "
            "an old clockmaker who repaired every clock in the valley.",
            "Each morning he opened his shop before sunrise, lit a small lamp, and listened to "
            "the ticking of a hundred machines.",
            "Children often stopped by on their way to school to watch him work, and he would "
            "explain how each gear turned the next.",
            "One winter a stranger arrived with a clock that ran backwards, and nobody in the "
            "village could say where it had come from.",
            "The clockmaker studied it for many nights, drawing careful diagrams by candlelight "
            "and testing every spring and wheel.",
            "At last he understood that the clock did not measure time at all, but the "
            "distance to the people its owner missed.",
            "He repaired it gently, so that it would run forward again, and returned it to the "
            "stranger without asking for payment.",
            "The stranger smiled, thanked him, and walked back into the forest, and the "
            "village never saw him again.",
        ]
    ),  # ~200 words
}


def assets() -> tuple[Path, Path]:
    return fetch_mirror(asset_dir(), "https://pypi.org/simple", "https://registry.npmjs.org")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
