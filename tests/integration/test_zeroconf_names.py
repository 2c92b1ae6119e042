"""Two daemons on one network are both found (two hosts in one home, two replicas).

Both are configured with the same zeroconf name (as two hosts would be with a fixed
name): the second one's probe finds the first holding it, zeroconf renames it ``-2`` with
one INFO line, and a browser sees both, each resolving to its own port. Two in-process
daemons over the session engine (no second model load); about 6 s, mostly mDNS probing
and announcing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets

import pytest
from zeroconf import InterfaceChoice, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from fastkokoro_wyoming.daemon import start
from fastkokoro_wyoming.wyoming_api.discovery import SERVICE_TYPE, default_instance_name
from tests.support.daemon import daemon_config


async def _browse(names: set[str], timeout: float = 20.0) -> dict[str, AsyncServiceInfo]:
    """Browse ``_wyoming._tcp.local.`` until every one of ``names`` is seen; resolve them."""
    seen: set[str] = set()
    all_seen = asyncio.Event()

    def on_change(zeroconf, service_type, name, state_change) -> None:  # noqa: ARG001
        if name in names and state_change in (ServiceStateChange.Added, ServiceStateChange.Updated):
            seen.add(name)
            if seen == names:
                all_seen.set()

    aiozc = AsyncZeroconf(interfaces=InterfaceChoice.All)
    browser = AsyncServiceBrowser(aiozc.zeroconf, [SERVICE_TYPE], handlers=[on_change])
    found: dict[str, AsyncServiceInfo] = {}
    try:
        try:
            await asyncio.wait_for(all_seen.wait(), timeout)
        except TimeoutError:
            pass
        for name in seen:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            if await info.async_request(aiozc.zeroconf, 5000):
                found[name] = info
        return found
    finally:
        await browser.async_cancel()
        await aiozc.async_close()


async def test_two_daemons_with_one_name_are_both_announced_and_found(engine, caplog) -> None:
    name = f"fk-twin-{secrets.token_hex(3)}"
    base = daemon_config(engine)
    cfg = dataclasses.replace(
        base, wyoming=dataclasses.replace(base.wyoming, zeroconf=True, zeroconf_name=name)
    )
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming.wyoming_api.discovery")
    first = await start(cfg, engine=engine)  # type: ignore[arg-type]
    try:
        second = await start(cfg, engine=engine)  # type: ignore[arg-type]
        try:
            announced = [d.wyoming.announcer for d in (first, second)]  # type: ignore[union-attr]
            assert all(a is not None for a in announced), caplog.text
            names = {a.service_name for a in announced}  # type: ignore[union-attr]
            assert names == {f"{name}.{SERVICE_TYPE}", f"{name}-2.{SERVICE_TYPE}"}
            renamed = [r for r in caplog.records if "is taken on this network" in r.getMessage()]
            assert len(renamed) == 1 and renamed[0].levelno == logging.INFO
            assert "Traceback" not in caplog.text and "failed" not in caplog.text

            found = await _browse(names)
            assert set(found) == names, f"browser saw {sorted(found)}"
            ports = {found[a.service_name].port for a in announced}  # type: ignore[union-attr]
            assert ports == {first.wyoming.port, second.wyoming.port}  # type: ignore[union-attr]
        finally:
            await second.stop()
    finally:
        await first.stop()


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("kitchen-pi", "fastkokoro-kitchen-pi"),
        ("nas.local", "fastkokoro-nas"),
        ("my_box", "fastkokoro-my-box"),
        ("", "fastkokoro"),
    ],
)
def test_the_default_name_comes_from_the_host_name(host: str, expected: str) -> None:
    assert default_instance_name(host) == expected
