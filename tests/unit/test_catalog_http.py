"""``http.public_catalog``: with an API key, the catalogs Open WebUI reads without its key
stay open (by default), speech and /metrics do not; the OpenAPI document says the same."""

from __future__ import annotations

import aiohttp
import pytest

from fastkokoro_wyoming.config import HttpConfig, load_config
from tests.support.http import KEY, serve

CATALOG = ["/v1/models", "/v1/models/kokoro", "/v1/audio/models", "/v1/audio/voices"]
CATALOG += ["/openapi.json"]
SPEECH = {"model": "tts-1", "input": "Hello.", "voice": "af_heart", "response_format": "pcm"}


async def status(session: aiohttp.ClientSession, method: str, url: str, **kw: object) -> int:
    async with session.request(method, url, **kw) as r:
        await r.read()
        return r.status


def test_public_catalog_is_on_by_default_and_follows_the_environment():
    assert HttpConfig().public_catalog is True
    cfg = load_config(environ={"FASTKOKORO_HTTP_PUBLIC_CATALOG": "false"})
    assert cfg.http.public_catalog is False


async def test_catalogs_open_speech_and_metrics_need_the_key():
    async with serve() as (base, session):
        for path in [*CATALOG, "/health"]:
            assert await status(session, "GET", base + path) == 200, path
        assert await status(session, "GET", base + "/v1/models/nope") == 404  # not 401
        assert await status(session, "GET", base + "/metrics") == 401
        assert await status(session, "GET", base + "/v1/no-such-route") == 401
        assert await status(session, "POST", base + "/v1/audio/speech", json=SPEECH) == 401
        assert await status(session, "POST", base + "/v1/audio/voices") == 401  # wrong method
        good = {"Authorization": f"Bearer {KEY}"}
        speech = await status(session, "POST", base + "/v1/audio/speech", json=SPEECH, headers=good)
        assert speech == 200
        assert await status(session, "GET", base + "/metrics", headers=good) == 200


async def test_public_catalog_false_keeps_only_health_open():
    async with serve(public_catalog=False) as (base, session):
        assert await status(session, "GET", base + "/health") == 200
        for path in CATALOG:
            assert await status(session, "GET", base + path) == 401, path
            good = {"Authorization": f"Bearer {KEY}"}
            assert await status(session, "GET", base + path, headers=good) == 200, path


@pytest.mark.parametrize("public", [True, False])
async def test_openapi_security_follows_the_setting(public):
    async with serve(public_catalog=public) as (base, session):
        good = {"Authorization": f"Bearer {KEY}"}
        async with session.get(base + "/openapi.json", headers=good) as r:
            spec = await r.json()
        expected_open = {"/health"}
        if public:
            expected_open |= {p.replace("kokoro", "{model_id}") for p in CATALOG}
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                url = base + path.replace("{model_id}", "kokoro")
                body = SPEECH if method == "post" else None
                needs_key = await status(session, method, url, json=body) == 401
                assert op["security"] == ([{"bearer": []}] if needs_key else []), path
                assert ("401" in op["responses"]) == needs_key, path
                assert needs_key == (path not in expected_open), path
