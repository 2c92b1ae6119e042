"""Slow and greedy HTTP clients: header and body timeouts, connection caps.

aiohttp bounds how long a kept-alive connection may idle, but not how long a client may
take to send a request: one that sends its headers (or body) a byte every few seconds
holds a socket and a handler forever, and a host may open as many such connections as
it likes. :class:`ConnectionGuard` closes those gaps without touching aiohttp's parser:

- it wraps each connection's protocol (:class:`GuardedSite` listens with the wrapper)
  to refuse connections over ``http.max_connections`` / ``max_connections_per_peer``
  with a 503, and to time a request's head: from the connection's opening, or from the
  first byte after the previous response, to aiohttp calling the app;
- its middlewares mark when a request is being handled (the head timer stops) and
  read the body within ``http.body_timeout_s`` (else 408, and the connection closes).

Each cut is logged once and counted (``fastkokoro_connections_cut_total``); other
connections never notice.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from functools import partial
from typing import Any

from aiohttp import web

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.errors import Handler, error_body, json_error
from fastkokoro_wyoming.peers import (
    BODY_TIMEOUT,
    HEADER_TIMEOUT,
    CutListener,
    PeerLimits,
    peer_host,
)

GUARD_KEY: web.AppKey[ConnectionGuard] = web.AppKey("connection_guard")


class ConnectionGuard:
    """The HTTP listener's connection caps and timeouts (one per app)."""

    def __init__(self, settings: HttpConfig, on_cut: CutListener | None = None) -> None:
        self.settings = settings
        self.limits = PeerLimits(
            "http", settings.max_connections, settings.max_connections_per_peer, on_cut
        )
        self.connections: dict[asyncio.BaseTransport, GuardedConnection] = {}

    def protocol_factory(self, server: Callable[[], asyncio.Protocol]) -> GuardedConnection:
        """A protocol for one new connection, wrapping aiohttp's."""
        return GuardedConnection(self, server)

    @web.middleware
    async def track_requests(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: the request's head has arrived, so its timer stops; while the
        handler runs (a long stream included), no head timer runs on the connection."""
        conn = self.connections.get(request.transport) if request.transport else None
        if conn is None:  # a test server's connection, or one already gone
            return await handler(request)
        conn.request_started()
        try:
            return await handler(request)
        finally:
            conn.request_finished()

    @web.middleware
    async def read_body_in_time(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Read the body within ``http.body_timeout_s`` before the route sees it (the
        routes read at most ``max_body_bytes``, so reading it first costs nothing)."""
        if not request.body_exists:
            return await handler(request)
        timeout = self.settings.body_timeout_s
        try:
            async with asyncio.timeout(timeout):
                await request.read()
        except TimeoutError:
            transport = request.transport
            peer = peer_host(transport.get_extra_info("peername") if transport else None)
            detail = f"the request body took longer than http.body_timeout_s ({timeout:g} s)"
            self.limits.cut(peer, BODY_TIMEOUT, detail)
            response = json_error(408, detail, code="request_timeout")
            response.force_close()
            # send it and close now: aiohttp would otherwise linger up to 10 s reading
            # the rest of the body the client is so slow to send
            await response.prepare(request)
            await response.write_eof()
            if transport is not None:
                transport.close()
            return response
        return await handler(request)


class GuardedConnection(asyncio.Protocol):
    """aiohttp's protocol for one connection, behind the caps and the head timer."""

    def __init__(self, guard: ConnectionGuard, server: Callable[[], asyncio.Protocol]) -> None:
        self.guard = guard
        self.server = server
        self.inner: Any = None  # aiohttp's RequestHandler, once admitted
        self.transport: asyncio.Transport | None = None
        self.peer = "unknown"
        self.timer: asyncio.TimerHandle | None = None
        self.in_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = peer_host(transport.get_extra_info("peername"))
        limits = self.guard.limits
        refused = limits.open(self.peer)
        if refused is not None:
            detail = limits.refuse_detail(refused, self.peer)
            limits.cut(self.peer, refused, detail)
            _answer_and_close(transport, 503, "Service Unavailable", detail, "too_many_connections")
            return
        self.guard.connections[transport] = self
        self.inner = self.server()
        self.inner.connection_made(transport)
        self._arm()  # the first request's head is due from the connection's opening

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return  # refused: whatever it sends is dropped with the connection
        if not self.in_request and self.timer is None:
            self._arm()  # the first byte of a new request after a response
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.inner is None:
            return
        self.guard.limits.close(self.peer)
        if self.transport is not None:
            self.guard.connections.pop(self.transport, None)
        self.inner.connection_lost(exc)

    def request_started(self) -> None:
        self.in_request = True
        self._disarm()

    def request_finished(self) -> None:
        self.in_request = False

    def _arm(self) -> None:
        self._disarm()
        timeout = self.guard.settings.header_timeout_s
        self.timer = asyncio.get_running_loop().call_later(timeout, self._head_too_slow)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _head_too_slow(self) -> None:
        self.timer = None
        if self.in_request or self.transport is None or self.transport.is_closing():
            return
        timeout = self.guard.settings.header_timeout_s
        detail = (
            f"the request line and headers took longer than http.header_timeout_s ({timeout:g} s)"
        )
        self.guard.limits.cut(self.peer, HEADER_TIMEOUT, detail)
        _answer_and_close(self.transport, 408, "Request Timeout", detail, "request_timeout")


def _answer_and_close(
    transport: asyncio.Transport, status: int, reason: str, message: str, code: str
) -> None:
    """A minimal OpenAI-style error response written straight to the socket (no request
    was parsed to answer through aiohttp), then close."""
    body = json.dumps(error_body(status, message, None, code)).encode()
    retry = "Retry-After: 1\r\n" if status == 503 else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n{retry}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    transport.write(head.encode() + body)
    transport.close()


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, listening with :class:`GuardedConnection` around its protocol."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, guard: ConnectionGuard) -> None:
        super().__init__(runner, host, port)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers with the runner (TCPSite.start's first step)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            partial(self.guard.protocol_factory, server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
