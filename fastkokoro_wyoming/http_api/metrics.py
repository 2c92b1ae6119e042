"""Prometheus metrics shared by both front ends, kept in a prometheus_client registry.

The HTTP front end serves :meth:`Metrics.exposition` at ``/metrics``; the Wyoming front
end may record into the same object. Each ``Metrics`` has its own CollectorRegistry
(never the global one), so several apps can live in one process, as they do in tests.
prometheus_client's metrics are thread-safe, so worker threads may record too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fastkokoro_wyoming.engine.protocol import AdmissionState, ModelState

PREFIX = "fastkokoro"
TTFA_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)
RTF_BUCKETS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


class Metrics:
    """Request counters, latency histograms and the live stream gauge, in one registry.

    Exposed names (``_created`` series aside): ``fastkokoro_requests_total{format}``,
    ``fastkokoro_errors_total{code}``, ``fastkokoro_time_to_first_audio_seconds``,
    ``fastkokoro_real_time_factor``, ``fastkokoro_active_streams``,
    ``fastkokoro_connections_cut_total{protocol,reason}``,
    ``fastkokoro_open_connections{protocol}`` and ``fastkokoro_info{provider}``.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self._requests = Counter(
            f"{PREFIX}_requests",
            "Synthesis requests accepted, by audio format.",
            ["format"],
            registry=reg,
        )
        self._errors = Counter(
            f"{PREFIX}_errors", "Errors answered to clients, by error code.", ["code"], registry=reg
        )
        self._ttfa = Histogram(
            f"{PREFIX}_time_to_first_audio_seconds",
            "Request to first audio bytes.",
            buckets=TTFA_BUCKETS,
            registry=reg,
        )
        self._rtf = Histogram(
            f"{PREFIX}_real_time_factor",
            "Synthesis wall time / audio duration.",
            buckets=RTF_BUCKETS,
            registry=reg,
        )
        self._active_gauge = Gauge(
            f"{PREFIX}_active_streams", "Responses currently streaming audio.", registry=reg
        )
        self._info = Info(PREFIX, "Static facts about the running engine.", registry=reg)
        self._cuts = Counter(
            f"{PREFIX}_connections_cut",
            "Connections refused (over a cap) or closed (too slow), by listener and reason.",
            ["protocol", "reason"],
            registry=reg,
        )
        self._listeners: list[ConnectionCount] = []  # watch_connections adds to it
        reg.register(_ConnectionsCollector(self._listeners))
        # The gauge never goes below zero (a stray finish must not report -1 streams).
        self._lock = threading.Lock()
        self._active = 0

    def observe_request(self, fmt: str) -> None:
        """Count one accepted synthesis request, by output format (``pcm`` for Wyoming)."""
        self._requests.labels(format=fmt).inc()

    def error(self, code: str) -> None:
        """Count one error answered to a client, by its error code."""
        self._errors.labels(code=code).inc()

    def stream_started(self) -> None:
        """One more response is streaming audio."""
        with self._lock:
            self._active += 1
            self._active_gauge.set(self._active)

    def stream_finished(self) -> None:
        """A streaming response ended (completed, failed or abandoned)."""
        with self._lock:
            self._active = max(0, self._active - 1)
            self._active_gauge.set(self._active)

    def observe_ttfa(self, seconds: float) -> None:
        """Seconds from request received to the first audio bytes sent."""
        self._ttfa.observe(seconds)

    def observe_rtf(self, factor: float) -> None:
        """Wall time of a whole synthesis divided by the audio duration it produced."""
        self._rtf.observe(factor)

    def connection_cut(self, protocol: str, reason: str) -> None:
        """Count one connection refused or cut (peers.py gives the reasons)."""
        self._cuts.labels(protocol=protocol, reason=reason).inc()

    def watch_connections(self, limits: ConnectionCount) -> None:
        """Export a listener's open connections at each scrape:
        ``fastkokoro_open_connections{protocol}``."""
        self._listeners.append(limits)

    @property
    def active_streams(self) -> int:
        """Responses streaming right now."""
        return self._active

    def watch_model(self, state: Callable[[], ModelState | None]) -> None:
        """Export the engine's idle-unload state at each scrape (``engine.idle_unload_s``):
        ``fastkokoro_model_loaded``, ``fastkokoro_model_unloads_total``,
        ``fastkokoro_model_reloads_total`` and ``fastkokoro_model_reload_seconds_total``."""
        self.registry.register(_ModelCollector(state))

    def watch_admission(self, state: Callable[[], AdmissionState | None]) -> None:
        """Export the engine's admission at each scrape: ``fastkokoro_refused_total{kind}``
        and ``fastkokoro_predicted_wait_seconds{kind}`` (the wait a new request would see:
        the signal to scale out on)."""
        self.registry.register(_AdmissionCollector(state))

    def exposition(self, provider: str = "unknown") -> bytes:
        """The Prometheus text exposition, served with :attr:`content_type`."""
        self._info.info({"provider": provider})
        return generate_latest(self.registry)

    def render(self, provider: str = "unknown") -> str:
        """:meth:`exposition` as text."""
        return self.exposition(provider).decode("utf-8")


class _ModelCollector(Collector):
    """Reads the engine's residency when scraped (it changes in worker threads)."""

    def __init__(self, state: Callable[[], ModelState | None]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        r = self.state()
        if r is None:
            return
        yield GaugeMetricFamily(
            f"{PREFIX}_model_loaded", "1 while the ONNX sessions are in memory.", int(r.loaded)
        )
        yield CounterMetricFamily(
            f"{PREFIX}_model_unloads", "Idle unloads (engine.idle_unload_s).", r.unloads
        )
        yield CounterMetricFamily(f"{PREFIX}_model_reloads", "Reloads after an unload.", r.reloads)
        yield CounterMetricFamily(
            f"{PREFIX}_model_reload_seconds", "Time spent reloading.", r.reload_seconds
        )


class ConnectionCount(Protocol):
    """What a listener's connection limits (peers.PeerLimits) report."""

    protocol: str
    total: int


class _ConnectionsCollector(Collector):
    """Reads a listener's open-connection count when scraped."""

    def __init__(self, listeners: list[ConnectionCount]) -> None:
        self.listeners = listeners

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            f"{PREFIX}_open_connections",
            "Client connections open, by listener.",
            labels=["protocol"],
        )
        for limits in self.listeners:
            family.add_metric([limits.protocol], limits.total)
        yield family


class _AdmissionCollector(Collector):
    """Reads the engine's admission counters and predicted waits when scraped."""

    def __init__(self, state: Callable[[], AdmissionState | None]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        a = self.state()
        if a is None:
            return
        refused = CounterMetricFamily(
            f"{PREFIX}_refused", "Requests refused as busy, by kind.", labels=["kind"]
        )
        wait = GaugeMetricFamily(
            f"{PREFIX}_predicted_wait_seconds",
            "Predicted wait for a new request's first audio, by kind.",
            labels=["kind"],
        )
        promised = CounterMetricFamily(
            f"{PREFIX}_first_audio_promised",
            "Admitted requests' first audio, by kind.",
            labels=["kind"],
        )
        late = CounterMetricFamily(
            f"{PREFIX}_first_audio_late",
            "Admitted requests whose first audio came later than promised, by kind.",
            labels=["kind"],
        )
        for kind, interactive in (("interactive", True), ("bulk", False)):
            refused.add_metric([kind], a.refused.get(kind, 0))
            wait.add_metric([kind], a.estimate(interactive).seconds)
            promised.add_metric([kind], a.promised.get(kind, 0))
            late.add_metric([kind], a.late.get(kind, 0))
        yield refused
        yield wait
        yield promised
        yield late
