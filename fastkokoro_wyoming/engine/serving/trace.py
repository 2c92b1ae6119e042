"""Per-request timing trace (``engine.runtime.profile_dir``): where first audio went.

Each finished request appends one JSON line to ``requests.jsonl``: its size, how long each
planning step (sentence split + G2P) took, how long each model call waited in the queue and
ran, the first-chunk and total times, and how it ended. Beside ONNX Runtime's own profile
of every call and the cProfile of the warmup, this is what a first-audio regression is
chased with.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


class RequestTrace:
    """Timings of one request; ``NullTrace`` when tracing is off."""

    def __init__(self, sink: TraceSink | None, **fields: Any) -> None:
        self._sink = sink
        self._t0 = time.perf_counter()
        self._record: dict[str, Any] = {**fields, "plan_ms": [], "calls": []}
        self._first: float | None = None

    def planned(self, started: float) -> None:
        self._record["plan_ms"].append(_ms(time.perf_counter() - started))

    def model_call(self, ids: int, submitted: float, started: float, ended: float) -> None:
        """From a worker thread: list.append is atomic."""
        self._record["calls"].append(
            {"ids": ids, "queue_ms": _ms(started - submitted), "run_ms": _ms(ended - started)}
        )

    def chunk(self) -> None:
        if self._first is None:
            self._first = time.perf_counter() - self._t0

    def close(self, outcome: str) -> None:
        if self._sink is None:
            return
        self._record.update(
            outcome=outcome,
            first_chunk_ms=_ms(self._first) if self._first is not None else None,
            total_ms=_ms(time.perf_counter() - self._t0),
        )
        self._sink.write(self._record)


class TraceSink:
    """``requests.jsonl`` in the profile folder, appended from any thread."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "requests.jsonl"
        self._lock = threading.Lock()

    def open(self, **fields: Any) -> RequestTrace:
        return RequestTrace(self, **fields)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        with self._lock, open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
