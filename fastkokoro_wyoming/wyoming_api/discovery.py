"""Zeroconf (mDNS) announcement so Home Assistant discovers the Wyoming server.

We use ``zeroconf.asyncio`` directly rather than ``wyoming.zeroconf``: that helper
announces IPv4 only, takes the bind address as-is (advertising 0.0.0.0), and its
extra pins an old zeroconf release.

Two daemons on one network (two hosts in one home, two replicas) must both be found, so the
default instance name comes from the host name (``fastkokoro-<host>``), and a name another
responder already holds is renamed by zeroconf's probe (``<name>-2``, ...) with one INFO
line, instead of failing with ``NonUniqueNameException``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence

from zeroconf import InterfaceChoice
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

_LOGGER = logging.getLogger(__name__)

SERVICE_TYPE = "_wyoming._tcp.local."
_MDNS_TARGET_IP = "224.0.0.251"
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
NAME_PREFIX = "fastkokoro"


def default_instance_name(hostname: str | None = None) -> str:
    """``fastkokoro-<host>``: unique per host on a home network, and says which host it is.
    Dots would split the DNS label, and mDNS labels hold at most 63 bytes."""
    host = (hostname if hostname is not None else socket.gethostname()).split(".")[0]
    host = "".join(ch if ch.isalnum() or ch == "-" else "-" for ch in host).strip("-")
    return f"{NAME_PREFIX}-{host}"[:63] if host else NAME_PREFIX


def detect_primary_ip() -> str:
    """IPv4 address of the interface that routes to the mDNS group.

    A UDP ``connect`` only picks a route; nothing is sent. Falls back to loopback
    (with a warning) on hosts with no multicast route.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.connect((_MDNS_TARGET_IP, 1))
        return sock.getsockname()[0]
    except OSError as err:
        _LOGGER.warning("Could not detect the primary IP (%s); announcing 127.0.0.1", err)
        return "127.0.0.1"
    finally:
        sock.close()


def advertised_address(host: str | None) -> str:
    """The address to announce for a server bound to ``host`` (wildcards -> primary IP)."""
    if host is None or host in _WILDCARD_HOSTS:
        return detect_primary_ip()
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return socket.gethostbyname(host)  # a host name such as "localhost"


class WyomingAnnouncer:
    """Registers ``<name>._wyoming._tcp.local.`` for one port; keep it alive while serving."""

    def __init__(
        self,
        name: str,
        port: int,
        host: str | None = None,
        *,
        interfaces: Sequence[str] | None = None,
    ) -> None:
        self.requested = name or default_instance_name()
        self.name = self.requested  # what was announced: renamed if another held it
        self.port = port
        self.address = advertised_address(host)
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    @property
    def service_name(self) -> str:
        """Full instance name; HA derives the config entry's unique_id from it."""
        return f"{self.name}.{SERVICE_TYPE}"

    async def register(self) -> None:
        """Announce the service under a name no other responder holds (renamed on a
        collision, logged once); raises zeroconf's other errors."""
        if self._aiozc is not None:
            return
        info = AsyncServiceInfo(
            SERVICE_TYPE,
            self.service_name,
            addresses=[ipaddress.ip_address(self.address).packed],
            port=self.port,
            properties={},  # HA reads no TXT properties
        )
        aiozc = AsyncZeroconf(
            interfaces=self._interfaces if self._interfaces is not None else InterfaceChoice.All
        )
        try:
            # Awaiting probes the name; the announcements then go out in the background.
            await aiozc.async_register_service(info, allow_name_change=True)
        except BaseException:
            await aiozc.async_close()
            raise
        self._aiozc, self._info = aiozc, info
        self.name = info.name.removesuffix(f".{SERVICE_TYPE}")
        if self.name != self.requested:
            _LOGGER.info(
                "Zeroconf: %s.%s is taken on this network; announcing as %s instead",
                self.requested,
                SERVICE_TYPE,
                self.service_name,
            )
        _LOGGER.info("Zeroconf: announced %s at %s:%s", self.service_name, self.address, self.port)

    async def unregister(self) -> None:
        """Send goodbye packets and close the mDNS sockets; safe to call twice."""
        aiozc, info = self._aiozc, self._info
        self._aiozc = self._info = None
        if aiozc is None:
            return
        try:
            if info is not None:
                goodbyes = await aiozc.async_unregister_service(info)
                await goodbyes  # ~0.4 s; lets HA drop the entry's address at once
        finally:
            await aiozc.async_close()
        _LOGGER.debug("Zeroconf: withdrew %s", self.service_name)
