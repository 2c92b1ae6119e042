"""Prometheus counters shared by both front ends, rendered by hand (no client library).

The HTTP front end serves ``render()`` at ``/metrics``; the Wyoming front end may
record into the same object. A lock makes it safe from worker threads too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

PREFIX = "fastkokoro"
TTFA_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
RTF_BUCKETS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class Histogram:
    """Fixed-bucket histogram (cumulative counts are computed when rendered)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
                break

    def lines(self, name: str) -> Iterable[str]:
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            yield f'{name}_bucket{{le="{_fmt(bound)}"}} {running}'
        yield f'{name}_bucket{{le="+Inf"}} {self.count}'
        yield f"{name}_sum {_fmt(self.sum)}"
        yield f"{name}_count {self.count}"


class Metrics:
    """Request counters, latency histograms and the live stream gauge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._errors: dict[str, int] = {}
        self._active = 0
        self._ttfa = Histogram(TTFA_BUCKETS)
        self._rtf = Histogram(RTF_BUCKETS)

    def observe_request(self, fmt: str) -> None:
        """Count one accepted synthesis request, by output format (``pcm`` for Wyoming)."""
        with self._lock:
            self._requests[fmt] = self._requests.get(fmt, 0) + 1

    def error(self, code: str) -> None:
        """Count one error answered to a client, by its error code."""
        with self._lock:
            self._errors[code] = self._errors.get(code, 0) + 1

    def stream_started(self) -> None:
        with self._lock:
            self._active += 1

    def stream_finished(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)

    def observe_ttfa(self, seconds: float) -> None:
        """Seconds from request received to the first audio bytes sent."""
        with self._lock:
            self._ttfa.observe(seconds)

    def observe_rtf(self, factor: float) -> None:
        """Wall time of a whole synthesis divided by the audio duration it produced."""
        with self._lock:
            self._rtf.observe(factor)

    @property
    def active_streams(self) -> int:
        return self._active

    def render(self, provider: str = "unknown") -> str:
        """Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            lines = [
                f"# HELP {PREFIX}_requests_total Synthesis requests accepted, by audio format.",
                f"# TYPE {PREFIX}_requests_total counter",
                *(
                    f'{PREFIX}_requests_total{{format="{_label(k)}"}} {v}'
                    for k, v in sorted(self._requests.items())
                ),
                f"# HELP {PREFIX}_errors_total Errors answered to clients, by error code.",
                f"# TYPE {PREFIX}_errors_total counter",
                *(
                    f'{PREFIX}_errors_total{{code="{_label(k)}"}} {v}'
                    for k, v in sorted(self._errors.items())
                ),
                f"# HELP {PREFIX}_time_to_first_audio_seconds Request to first audio bytes.",
                f"# TYPE {PREFIX}_time_to_first_audio_seconds histogram",
                *self._ttfa.lines(f"{PREFIX}_time_to_first_audio_seconds"),
                f"# HELP {PREFIX}_real_time_factor Synthesis wall time / audio duration.",
                f"# TYPE {PREFIX}_real_time_factor histogram",
                *self._rtf.lines(f"{PREFIX}_real_time_factor"),
                f"# HELP {PREFIX}_active_streams Responses currently streaming audio.",
                f"# TYPE {PREFIX}_active_streams gauge",
                f"{PREFIX}_active_streams {self._active}",
                f"# HELP {PREFIX}_info Static facts about the running engine.",
                f"# TYPE {PREFIX}_info gauge",
                f'{PREFIX}_info{{provider="{_label(provider)}"}} 1',
            ]
        return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return repr(float(value)) if value != int(value) else f"{value:.1f}"


def _label(value: str) -> str:
    """Escape a label value as the exposition format requires."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
