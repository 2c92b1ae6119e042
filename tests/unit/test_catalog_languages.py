"""Only voices the install can speak are advertised; the catalogs open without the key.

A missing extra is simulated by the language table's injected ``installed`` predicate,
so nothing is uninstalled. The engine is built from its parts (random voice tables, no
model): the catalog, ``prepare`` and the G2P's refusal never touch the model.
"""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

from fastkokoro_wyoming.config import Config, EngineConfig, HttpConfig, WyomingConfig
from fastkokoro_wyoming.daemon import start
from fastkokoro_wyoming.engine.engine import Engine
from fastkokoro_wyoming.engine.errors import LanguageUnavailable
from fastkokoro_wyoming.engine.model.voices import VoiceStore
from fastkokoro_wyoming.engine.text import g2p as g2p_module
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable, module_installed
from fastkokoro_wyoming.engine.text.vocab import Vocab
from fastkokoro_wyoming.engine.types import SynthesisRequest
from fastkokoro_wyoming.wyoming_api.handler import build_info

VOICES = ("af_heart", "bf_emma", "jf_alpha", "jm_kumo", "zf_xiaobei", "ef_dora", "pf_dora")
NO_CJK = {"misaki_ja_lightning", "jieba"}  # one module of each extra is enough to lose it
NOTE = (
    "Japanese (ja-JP), Mandarin Chinese (zh-CN) not available: install fastkokoro-wyoming[ja], [zh]"
)


def without(*modules: str) -> LanguageTable:
    """A table that believes ``modules`` are not installed (everything else is)."""
    return LanguageTable(installed=lambda name: name not in modules)


def make_engine(table: LanguageTable) -> Engine:
    rng = np.random.default_rng(0)
    styles = {n: rng.standard_normal((510, 256)).astype(np.float32) for n in VOICES}
    return Engine(
        EngineConfig(),
        voices=VoiceStore(styles, table),
        vocab=Vocab.load(),
        g2p=G2P(table),
        session=SimpleNamespace(provider="CPUExecutionProvider"),  # type: ignore[arg-type]
        scheduler=None,  # type: ignore[arg-type]  # nothing here runs the model
        languages=table,
    )


# --- the availability check -------------------------------------------------------------


def test_this_venv_speaks_every_language():
    table = LanguageTable()
    assert table.unavailable() == []
    assert table.unavailable_note() is None


def test_missing_extras_are_named_once_with_the_extra_to_install():
    table = without(*NO_CJK)
    assert [lg.code for lg in table.unavailable()] == ["j", "z"]
    assert table.unavailable_note() == NOTE
    assert without("unidic_lite").unavailable_note() == (
        "Japanese (ja-JP) not available: install fastkokoro-wyoming[ja]"
    )


def test_a_missing_base_package_says_reinstall():
    note = without("espeakng_loader").unavailable_note()
    assert note is not None and note.count("not available") == 1
    assert "Spanish (es-ES)" in note and "American English (en-US)" in note
    assert "reinstall fastkokoro-wyoming" in note


def test_module_installed_looks_without_importing(monkeypatch):
    assert module_installed("json")
    assert not module_installed("no_such_module_fastkokoro")
    monkeypatch.setitem(sys.modules, "jieba", None)  # how tests block an import
    assert not module_installed("jieba")
    assert LanguageTable().missing_module(LanguageTable().resolve("zh")) == "jieba"


# --- the catalog hides them; requests still get a clear error --------------------------


def test_voice_store_lists_only_speakable_voices_but_resolves_all():
    store = make_engine(without(*NO_CJK)).voice_store
    assert [v.name for v in store.infos] == ["af_heart", "bf_emma", "ef_dora", "pf_dora"]
    assert store.resolve("jf_alpha").lang == "j"  # still resolves: the G2P refuses it
    assert store.resolve("zf_xiaobei(1)+af_heart(1)").lang == "z"
    assert store.default_for("j") == "jf_alpha"
    full = make_engine(LanguageTable()).voice_store
    assert [v.name for v in full.infos] == sorted(VOICES)


def test_g2p_refuses_a_missing_language_before_importing(monkeypatch):
    def never() -> None:
        raise AssertionError("the builder must not run when the table says it is missing")

    monkeypatch.setattr(g2p_module, "_japanese", never)
    g = G2P(without(*NO_CJK))
    with pytest.raises(LanguageUnavailable) as err:
        g.phonemize("今日は", "ja")
    assert (err.value.code, err.value.param) == ("language_unavailable", "lang")
    assert "misaki_ja_lightning" in err.value.message
    assert "pip install 'fastkokoro-wyoming[ja]'" in err.value.message
    assert g.loaded() == []


def test_a_request_for_a_hidden_voice_still_prepares_and_names_its_language():
    eng = make_engine(without(*NO_CJK))
    assert eng.prepare(SynthesisRequest("こんにちは", voice="jf_alpha")).lang == "j"
    # lang alone still finds the language's voice (so the G2P's error names the extra,
    # not "no installed voice speaks 'ja'")
    assert eng.prepare(SynthesisRequest("こんにちは", lang="ja")).voice.name == "jf_alpha"


def test_wyoming_info_lists_only_speakable_voices():
    info = build_info(make_engine(without(*NO_CJK)), WyomingConfig())
    (program,) = info.tts
    assert [v.name for v in program.voices] == ["af_heart", "bf_emma", "ef_dora", "pf_dora"]
    assert {lang for v in program.voices for lang in v.languages} == {
        "en-US",
        "en-GB",
        "es-ES",
        "pt-BR",
    }


async def test_daemon_catalogs_log_line_and_ready_line(caplog):
    """Both front ends over one engine: Wyoming info and /v1/audio/voices agree, the Ready
    line counts what they list, and one line names the missing extras."""
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming.daemon")
    cfg = Config(
        engine=EngineConfig(),
        http=HttpConfig(host="127.0.0.1", port=0),
        wyoming=WyomingConfig(host="127.0.0.1", port=0, zeroconf=False),
    )
    daemon = await start(cfg, engine=make_engine(without(*NO_CJK)))
    try:
        async with AsyncTcpClient("127.0.0.1", daemon.wyoming.port) as client:
            await client.write_event(Describe().event())
            info = Info.from_event(await client.read_event())
        wyoming_names = [v.name for v in info.tts[0].voices]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{daemon.http.port}/v1/audio/voices") as r:
                http_names = [v["id"] for v in (await r.json())["voices"]]
        assert wyoming_names == http_names == ["af_heart", "bf_emma", "ef_dora", "pf_dora"]
        assert "; 4 voices in 4 languages (en-GB, en-US, es-ES, pt-BR);" in daemon.ready_line()
    finally:
        await daemon.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count(NOTE) == 1
    assert messages.index(NOTE) < next(i for i, m in enumerate(messages) if m.startswith("Ready"))


async def test_no_note_when_every_language_is_speakable(caplog):
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming.daemon")
    cfg = Config(
        engine=EngineConfig(),
        http=HttpConfig(enabled=False),
        wyoming=WyomingConfig(host="127.0.0.1", port=0, zeroconf=False),
    )
    daemon = await start(cfg, engine=make_engine(LanguageTable()))
    await daemon.stop()
    assert not [r for r in caplog.records if "not available" in r.getMessage()]
    assert f"{len(VOICES)} voices in 6 languages" in daemon.ready_line()
