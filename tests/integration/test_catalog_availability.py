"""The advertised catalog is what the install can speak, and catalogs open without the key.

Real model, real clients (wyoming's AsyncTcpClient, aiohttp, the openai SDK), loopback.
This venv has the ``ja`` and ``zh`` extras; their absence is injected through the
language table (``LanguageTable(installed=...)``) of an engine built from the session
engine's loaded parts (model session, scheduler, vocabulary), so no second model loads.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from openai import AsyncOpenAI, AuthenticationError
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from fastkokoro_wyoming.engine.engine import Engine
from fastkokoro_wyoming.engine.model.voices import VoiceStore
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from tests.support.daemon import (
    TIMEOUT,
    daemon_config,
    pcm16_to_float,
    read_event,
    read_until,
    wyoming_client,
)

pytestmark = pytest.mark.integration

NO_CJK = frozenset({"misaki_ja_lightning", "jieba"})  # one module of each extra
KEY = "sk-catalog-test"
CATALOG = ["/v1/models", "/v1/models/kokoro", "/v1/audio/models", "/v1/audio/voices"]
CATALOG += ["/openapi.json", "/health"]


def without_cjk(engine: Engine, voices_path: object) -> Engine:
    """The session engine's loaded parts behind a language table that lacks ja and zh."""
    table = LanguageTable(installed=lambda name: name not in NO_CJK)
    derived = Engine(
        engine.cfg,
        voices=VoiceStore.load(voices_path, table),  # type: ignore[arg-type]
        vocab=engine.vocab,
        g2p=G2P(table),
        session=engine.session,
        scheduler=engine.scheduler,
        languages=table,
        windowed=engine.windowed,
    )
    return derived


async def started(cfg, engine) -> AsyncIterator[object]:
    from fastkokoro_wyoming.daemon import start

    d = await start(cfg, engine=engine)  # stop() leaves the shared engine open
    try:
        yield d
    finally:
        await d.stop()


@pytest.fixture
async def daemon_without_cjk(engine, kokoro_assets, caplog) -> AsyncIterator[object]:
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming.daemon")
    derived = without_cjk(engine, kokoro_assets[1])
    async for d in started(daemon_config(engine), derived):
        yield d


@pytest.fixture
async def daemon_with_key(engine) -> AsyncIterator[object]:
    cfg = daemon_config(engine)
    cfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, api_key=KEY))
    async for d in started(cfg, engine):
        yield d


async def catalogs(d) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(name, locale) of every voice, as Wyoming ``info`` and ``/v1/audio/voices`` list them."""
    async with wyoming_client(d) as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await read_event(client))
    (program,) = info.tts
    wyoming = [(v.name, *v.languages) for v in program.voices]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{d.http.port}/v1/audio/voices") as r,
    ):
        assert r.status == 200
        http = [(v["id"], v["language"]) for v in (await r.json())["voices"]]
    return wyoming, http


async def test_without_ja_zh_41_voices_in_7_languages(daemon_without_cjk, caplog):
    d = daemon_without_cjk
    wyoming, http = await catalogs(d)
    assert wyoming == http
    assert len(http) == 41
    locales = {locale for _, locale in http}
    assert len(locales) == 7 and not locales & {"ja-JP", "zh-CN"}
    assert "; 41 voices in 7 languages (" in d.ready_line()
    logged = [r.getMessage() for r in caplog.get_records("setup")]  # the fixture started it
    note = [m for m in logged if "not available" in m]
    assert note == [
        "Japanese (ja-JP), Mandarin Chinese (zh-CN) not available: "
        "install fastkokoro-wyoming[ja], [zh]"
    ]

    # a hidden voice still resolves, and its request names the extra to install
    body = {"model": "tts-1", "input": "こんにちは。", "voice": "jf_alpha"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{d.http.port}/v1/audio/speech", json=body) as r,
    ):
        error = (await r.json())["error"]
        assert r.status == 400, error
    assert error["code"] == "language_unavailable" and error["param"] == "lang"
    assert "fastkokoro-wyoming[ja]" in error["message"]
    async with wyoming_client(d) as client:
        voice = SynthesizeVoice(name="zf_xiaobei")
        await client.write_event(Synthesize(text="你好。", voice=voice).event())
        events = await read_until(client, "error")
    assert events[-1].data["code"] == "language_unavailable"
    assert "fastkokoro-wyoming[zh]" in events[-1].data["text"]


async def test_with_the_extras_54_voices_in_9_languages(daemon):
    wyoming, http = await catalogs(daemon)
    assert wyoming == http
    assert len(http) == 54 and len({locale for _, locale in http}) == 9
    assert "; 54 voices in 9 languages (" in daemon.ready_line()


async def test_catalogs_open_without_the_key_speech_needs_it(daemon_with_key):
    base = f"http://127.0.0.1:{daemon_with_key.http.port}"
    async with aiohttp.ClientSession() as session:
        for path in CATALOG:
            async with session.get(base + path) as r:
                assert r.status == 200, path
        voices = await (await session.get(base + "/v1/audio/voices")).json()
        assert len(voices["voices"]) == 54
        async with session.get(base + "/metrics") as r:
            assert r.status == 401
    for key, expect_ok in (("wrong", False), (KEY, True)):
        async with AsyncOpenAI(
            base_url=f"{base}/v1", api_key=key, timeout=TIMEOUT, max_retries=0
        ) as client:
            call = client.audio.speech.create(
                model="tts-1", voice="af_heart", input="Hello there.", response_format="pcm"
            )
            if not expect_ok:
                with pytest.raises(AuthenticationError):
                    await call
                continue
            audio = pcm16_to_float((await call).content)
    assert audio.size > 24000 // 4
