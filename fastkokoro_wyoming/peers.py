"""Open connections per client address, and the one place a connection cut is reported.

Both listeners (HTTP and Wyoming) cap how many connections they hold in all and from
one address, so a single misbehaving host (a script in a loop, a slowloris) cannot take
every socket; and both cut slow clients. Each cut is logged once at INFO with the peer
and counted by reason, so an operator sees in ``/metrics`` what the server refused.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

_LOGGER = logging.getLogger(__name__)

# Reasons a connection is refused or cut; the label values of the metric.
TOTAL_CAP = "max_connections"
PEER_CAP = "max_connections_per_peer"
HEADER_TIMEOUT = "header_timeout"
BODY_TIMEOUT = "body_timeout"
READ_TIMEOUT = "read_timeout"

# (protocol, reason) -> None: the metrics hook the daemon wires in
CutListener = Callable[[str, str], None]


class PeerLimits:
    """Counts open connections of one listener; refuses those over the caps.

    ``max_per_peer`` 0 turns the per-address cap off: behind a proxy or load balancer
    every connection comes from the proxy's address.
    """

    def __init__(
        self,
        protocol: str,
        max_total: int,
        max_per_peer: int,
        on_cut: CutListener | None = None,
    ) -> None:
        self.protocol = protocol
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.on_cut = on_cut
        self.by_peer: Counter[str] = Counter()
        self.total = 0
        self.cuts: Counter[str] = Counter()

    def open(self, peer: str) -> str | None:
        """Count a new connection from ``peer``; the cap it breaks (and it is not
        counted, the caller closes it), or None."""
        if self.total >= self.max_total:
            return TOTAL_CAP
        if self.max_per_peer and self.by_peer[peer] >= self.max_per_peer:
            return PEER_CAP
        self.total += 1
        self.by_peer[peer] += 1
        return None

    def close(self, peer: str) -> None:
        """An opened connection ended."""
        self.total = max(0, self.total - 1)
        self.by_peer[peer] -= 1
        if self.by_peer[peer] <= 0:
            del self.by_peer[peer]

    def cut(self, peer: str, reason: str, detail: str) -> None:
        """Log and count one refused or cut connection (once per connection)."""
        self.cuts[reason] += 1
        _LOGGER.info("%s: closing the connection from %s: %s", self.protocol, peer, detail)
        if self.on_cut is not None:
            self.on_cut(self.protocol, reason)

    def refuse_detail(self, reason: str, peer: str) -> str:
        """Why a new connection was refused, for the log and the client."""
        if reason == TOTAL_CAP:
            return f"{self.total} connections are open; the limit is {self.max_total}"
        return (
            f"{self.by_peer[peer]} connections are open from {peer}; the limit per address "
            f"is {self.max_per_peer}"
        )


def peer_host(peername: object) -> str:
    """The address part of a socket's peer name (``("1.2.3.4", 5678)`` -> ``1.2.3.4``)."""
    if isinstance(peername, tuple) and peername:
        return str(peername[0])
    return str(peername or "unknown")
