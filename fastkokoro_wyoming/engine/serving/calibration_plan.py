"""One voice's calibration as the background builds it: what to decode, what it pooled."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model.windowed.decoder import WindowedDecoder
from ..model.windowed.norm_stats import NormPriors, StatsPool


@dataclass(frozen=True)
class Plan:
    """One voice's calibration: its table, texts, anchor rows, reference and cache file."""

    table: np.ndarray
    texts: list[list[int]]
    anchors: tuple[int, ...]
    reference: NormPriors | None
    path: Path


@dataclass
class Calibration:
    """One voice's background calibration: its decodes and what they pooled so far."""

    name: str
    path: Path
    steps: list[tuple[int, list[int], np.ndarray]]  # (anchor index, ids, style row)
    pool: StatsPool
    reference: NormPriors | None = None  # quick calibration: keep this voice's row curve
    done: int = 0
    preempted: int = 0
    started: float = 0.0

    @staticmethod
    def pool_channels(decoder: WindowedDecoder | None) -> tuple[int, ...]:
        assert decoder is not None
        return decoder.graphs.channels
