"""The real daemon in-process over the shared session engine (helpers: tests/support/daemon.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.daemon import daemon_config


@pytest.fixture(scope="session")
async def daemon(engine: object) -> AsyncIterator[object]:
    """One daemon (HTTP + Wyoming) over the session engine; stop() leaves the engine open."""
    from fastkokoro_wyoming.daemon import start

    d = await start(daemon_config(engine), engine=engine)  # type: ignore[arg-type]
    try:
        yield d
    finally:
        await d.stop()
