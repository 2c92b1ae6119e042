"""One voice's calibration as the background builds it: what to decode, what it pooled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..model.windowed.decoder import WindowedDecoder
from ..model.windowed.norm_stats import NormPriors, StatsPool, flatten_stats


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
    refine: bool = False  # the full plan, replacing quick priors already in use
    todo: list[int] = field(default_factory=list)  # steps not yet decoded, next first
    in_flight: int = 0  # decodes submitted and not yet collected
    done: int = 0
    error: BaseException | None = None  # the first decode that failed: the voice stays whole
    preempted: int = 0
    started: float = 0.0

    @staticmethod
    def of(name: str, plan: Plan, refine: bool) -> Calibration:
        """The calibration ``plan`` asks for: one decode per anchor row and text."""
        styles = np.asarray(plan.table, np.float32).reshape(-1, plan.table.shape[-1])
        steps = [(a, ids, styles[row : row + 1]) for a, row in enumerate(plan.anchors)
                 for ids in plan.texts]  # fmt: skip
        cal = Calibration(name, plan.path, steps, StatsPool(plan.anchors), refine=refine)
        cal.todo = list(range(len(steps)))
        return cal

    @property
    def key(self) -> str:
        """Its entry in the background progress (``/health``)."""
        return f"{'refine' if self.refine else 'priors'}:{self.name}"

    @staticmethod
    def pool_channels(decoder: WindowedDecoder | None) -> tuple[int, ...]:
        assert decoder is not None
        return decoder.graphs.channels


def decode_stats(
    decoder: WindowedDecoder, ids: list[int], style: np.ndarray, options: Any
) -> tuple[float, int, np.ndarray, np.ndarray]:
    """One calibration decode: the frames' exact norm statistics (for the pool) and its
    time (for the progress estimate)."""
    t0 = time.perf_counter()
    xgen, f0, phase, _ = decoder.analyse(ids, style, 1.0, options)
    stats = decoder.exact_stats(xgen, f0, phase, style, options)
    mean, var = flatten_stats(stats, decoder.graphs.norm_count)
    return time.perf_counter() - t0, int(xgen.shape[-1]), mean, var
