"""The Wyoming listener as a service inside the daemon's loop, with its zeroconf announcement."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from wyoming.server import AsyncTcpServer

from ..engine.protocol import SpeechEngine
from ..peers import CutListener, PeerLimits
from .discovery import WyomingAnnouncer
from .handler import WyomingHandler, build_info

if TYPE_CHECKING:
    from ..config import WyomingConfig

_LOGGER = logging.getLogger(__name__)


class WyomingService:
    """The Wyoming TCP listener plus its zeroconf announcement, inside the daemon's loop."""

    def __init__(
        self,
        engine: SpeechEngine,
        settings: WyomingConfig,
        *,
        zeroconf_interfaces: Sequence[str] | None = None,
        on_cut: CutListener | None = None,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._zeroconf_interfaces = zeroconf_interfaces
        self._server: AsyncTcpServer | None = None
        self._announcer: WyomingAnnouncer | None = None
        # connection caps shared by every handler of this listener (peers.py)
        self.limits = PeerLimits(
            "wyoming", settings.max_connections, settings.max_connections_per_peer, on_cut
        )
        self.port = settings.port  # the bound port once started (differs when 0 is asked)

    @property
    def announcer(self) -> WyomingAnnouncer | None:
        """The live zeroconf registration, if any."""
        return self._announcer

    async def start(self) -> None:
        """Bind (raising OSError if the port is taken), then announce over zeroconf."""
        info = build_info(self._engine, self._settings)
        server = AsyncTcpServer(self._settings.host, self._settings.port)
        # start(), not run(): run() installs and later removes a SIGTERM handler, and the
        # daemon owns signal handling.
        await server.start(
            partial(WyomingHandler, self._engine, self._settings, info, limits=self.limits)
        )
        self._server = server
        self.port = _bound_port(server, self._settings.port)
        _LOGGER.info("Wyoming server listening on %s:%s", self._settings.host, self.port)
        if self._settings.zeroconf:
            announcer = WyomingAnnouncer(
                self._settings.zeroconf_name,
                self.port,
                self._settings.host,
                interfaces=self._zeroconf_interfaces,
            )
            try:
                await announcer.register()
            except Exception:
                # Still usable: HA can add the integration by host and port.
                _LOGGER.exception("Zeroconf announcement of %s failed", announcer.service_name)
            else:
                self._announcer = announcer

    async def stop(self) -> None:
        """Withdraw the announcement, close the listener and every open connection."""
        announcer, self._announcer = self._announcer, None
        if announcer is not None:
            try:
                await announcer.unregister()
            except Exception:
                _LOGGER.exception("Zeroconf unregistration failed")
        server, self._server = self._server, None
        if server is None:
            return
        aio_server = getattr(server, "_server", None)  # wyoming keeps it private
        if aio_server is not None:
            aio_server.close()  # no new connections; requests in flight may finish
        connections = list(getattr(server, "_handlers", {}))
        if connections:
            _, pending = await asyncio.wait(connections, timeout=self._settings.drain_timeout_s)
            if pending:
                _LOGGER.warning("Closing %d Wyoming connections still open", len(pending))
        await server.stop()


def _bound_port(server: AsyncTcpServer, fallback: int) -> int:
    """The real port after binding (port 0 in tests); wyoming keeps the asyncio.Server private."""
    aio_server = getattr(server, "_server", None)
    sockets = aio_server.sockets if aio_server is not None else ()
    return sockets[0].getsockname()[1] if sockets else fallback


async def start_wyoming_server(
    engine: SpeechEngine,
    settings: WyomingConfig,
    *,
    zeroconf_interfaces: Sequence[str] | None = None,
    on_cut: CutListener | None = None,
) -> WyomingService:
    """Start serving Wyoming (and announce it if ``settings.zeroconf``); stop() undoes it.
    ``on_cut(protocol, reason)`` counts connections refused or cut (the daemon's metrics)."""
    service = WyomingService(
        engine, settings, zeroconf_interfaces=zeroconf_interfaces, on_cut=on_cut
    )
    await service.start()
    return service
