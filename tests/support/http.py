"""A real HTTP front end over a real Engine on the tiny graph, with an API key, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from fastkokoro_wyoming.config import HttpConfig
from fastkokoro_wyoming.http_api.app import start_http_server
from fastkokoro_wyoming.http_api.metrics import Metrics
from tests.support.tiny_engine import tiny_engine

KEY = "s3cret"


@asynccontextmanager
async def serve(**settings: object) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    cfg = HttpConfig(host="127.0.0.1", port=0, api_key=KEY, **settings)  # type: ignore[arg-type]
    with tiny_engine() as engine:
        service = await start_http_server(engine, cfg, Metrics())
        try:
            async with aiohttp.ClientSession() as session:
                yield f"http://127.0.0.1:{service.port}", session
        finally:
            await service.stop()
