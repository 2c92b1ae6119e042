"""The /dev phoneme routes' request handling over a real Engine on the tiny graph (its
spelling G2P): shapes, errors (the engine's own), the key. The real model's answers are in
tests/integration/test_user_pronunciation.py. ~1 s."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastkokoro_wyoming.config import load_config
from fastkokoro_wyoming.engine.builder import build_engine
from fastkokoro_wyoming.engine.errors import ConfigError
from fastkokoro_wyoming.engine.settings import ModelFiles
from tests.support.http import KEY, serve

AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_phonemize_answers_kokoro_fastapis_shape():
    async with serve() as (base, session):
        async with session.post(
            base + "/dev/phonemize", json={"text": "Hi There"}, headers=AUTH
        ) as r:
            assert r.status == 200
            body = await r.json()
    assert set(body) == {"phonemes", "tokens"} and body["phonemes"] == "hi there"
    assert len(body["tokens"]) == len(body["phonemes"])


@pytest.mark.parametrize(
    "path,body,param",
    [
        ("/dev/phonemize", {}, "text"),
        ("/dev/phonemize", {"text": 3}, "text"),
        ("/dev/phonemize", {"text": "a", "language": 1}, "language"),
        ("/dev/phonemize", {"text": "  "}, "text"),
        ("/dev/generate_from_phonemes", {"voice": "af_heart"}, "phonemes"),
        (
            "/dev/generate_from_phonemes",
            {"phonemes": "a", "response_format": "ogg"},
            "response_format",
        ),
        ("/dev/generate_from_phonemes", {"phonemes": "a", "speed": "fast"}, "speed"),
        ("/dev/generate_from_phonemes", {"phonemes": "a", "stream": "yes"}, "stream"),
        ("/dev/generate_from_phonemes", {"phonemes": "a", "voice": "xx_nobody"}, "voice"),
        ("/dev/generate_from_phonemes", {"phonemes": "a", "speed": 9}, "speed"),
    ],
)
async def test_bad_requests_are_400_naming_the_field(path, body, param):
    async with serve() as (base, session):
        async with session.post(base + path, json=body, headers=AUTH) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["error"]["param"] == param


async def test_both_routes_need_the_key_and_generate_streams_wav_by_default():
    async with serve() as (base, session):
        for path in ("/dev/phonemize", "/dev/generate_from_phonemes"):
            async with session.post(base + path, json={"text": "a", "phonemes": "a"}) as r:
                assert r.status == 401
        body = {"phonemes": "həlˈO.", "voice": "af_heart"}
        async with session.post(base + "/dev/generate_from_phonemes", json=body, headers=AUTH) as r:
            assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
            assert r.headers.get("Transfer-Encoding") == "chunked"
            assert (await r.read())[:4] == b"RIFF"
        body["stream"] = False
        async with session.post(base + "/dev/generate_from_phonemes", json=body, headers=AUTH) as r:
            assert r.status == 200 and "Transfer-Encoding" not in r.headers


async def test_openapi_documents_both_routes():
    async with serve() as (base, session):
        async with session.get(base + "/openapi.json") as r:
            spec = await r.json()
    assert spec["paths"]["/dev/phonemize"]["post"]["security"] == [{"bearer": []}]
    request = spec["components"]["schemas"]["GenerateFromPhonemesRequest"]
    assert request["required"] == ["phonemes"]
    assert set(request["properties"]) >= {"phonemes", "voice", "speed", "response_format"}
    assert spec["components"]["schemas"]["Phonemes"]["required"] == ["phonemes", "tokens"]


def test_engine_lexicon_comes_from_yaml_and_the_environment(tmp_path):
    assert load_config(environ={"FASTKOKORO_ENGINE_LEXICON": "/x/lex.yaml"}).engine.lexicon == (
        "/x/lex.yaml"
    )
    path = tmp_path / "c.yaml"
    path.write_text("engine:\n  lexicon: ~/lex.yaml\n")
    assert load_config(path, environ={}).engine.lexicon == "~/lex.yaml"


def test_a_bad_lexicon_refuses_to_start_before_the_model_loads(tmp_path):
    lexicon = tmp_path / "lex.yaml"
    lexicon.write_text("en-US:\n  HVAC: ˈAʧ$æk\n", "utf-8")
    cfg = load_config(environ={"FASTKOKORO_ENGINE_LEXICON": str(lexicon)}).engine
    missing = ModelFiles(Path("/nonexistent/model.onnx"), Path("/nonexistent/voices"))
    with pytest.raises(ConfigError, match=r"en-US: 'HVAC': '\$' \(U\+0024 DOLLAR SIGN\)"):
        build_engine(cfg, missing)  # the model files are never opened
