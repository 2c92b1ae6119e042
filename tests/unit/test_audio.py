"""StreamEncoder: every format decodes back to the audio it was fed, and streams."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest

from fastkokoro_wyoming.audio import (
    CONTENT_TYPES,
    FORMATS,
    StreamEncoder,
    float_to_pcm16,
    streaming_wav_header,
)
from fastkokoro_wyoming.engine.types import SAMPLE_RATE
from tests.support.audio import decode

CHUNK_SECONDS = (0.25, 0.5, 0.1, 0.4)
# Encoders without a gapless tag (mp3 and aac in raw streams) add priming/padding.
MAX_PADDING = 0.1


def _chunks() -> list[np.ndarray]:
    out = []
    for seconds in CHUNK_SECONDS:
        t = np.arange(int(seconds * SAMPLE_RATE), dtype=np.float32) / SAMPLE_RATE
        out.append((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32))
    return out


def _encode_all(fmt: str) -> tuple[list[bytes], bytes]:
    enc = StreamEncoder(fmt)
    parts = [enc.encode(c) for c in _chunks()]
    tail = enc.flush()
    return parts, b"".join(parts) + tail


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_round_trips(fmt: str) -> None:
    _, data = _encode_all(fmt)
    rate, channels, seconds = decode(data, fmt)
    expected = sum(CHUNK_SECONDS)
    assert channels == 1
    assert rate == (48_000 if fmt == "opus" else SAMPLE_RATE)
    assert expected - 0.05 <= seconds <= expected + MAX_PADDING, seconds


@pytest.mark.parametrize("fmt", ["mp3", "wav", "pcm", "opus", "aac", "flac"])
def test_bytes_stream_before_flush(fmt: str) -> None:
    parts, _ = _encode_all(fmt)
    assert parts[0], "first chunk produced no bytes"
    assert sum(len(p) for p in parts[:-1]) > 0


def test_wav_header_has_unknown_sizes() -> None:
    header = streaming_wav_header()
    assert len(header) == 44
    assert header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", header[4:8])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", header[40:44])[0] == 0xFFFFFFFF
    assert struct.unpack("<I", header[24:28])[0] == SAMPLE_RATE


def test_pcm_is_raw_s16le() -> None:
    enc = StreamEncoder("pcm")
    chunk = np.array([0.0, 1.0, -1.0, 2.0], dtype=np.float32)
    assert enc.encode(chunk) == float_to_pcm16(chunk)
    assert enc.flush() == b""
    assert np.frombuffer(float_to_pcm16(chunk), "<i2").tolist() == [0, 32767, -32767, 32767]


def test_content_types_and_errors() -> None:
    assert set(CONTENT_TYPES) == {"mp3", "opus", "aac", "flac", "wav", "pcm"}
    assert CONTENT_TYPES["mp3"] == "audio/mpeg"
    with pytest.raises(ValueError):
        StreamEncoder("ogg-vorbis")
    enc = StreamEncoder("mp3")
    enc.encode(_chunks()[0])
    enc.flush()
    assert enc.flush() == b""
    with pytest.raises(RuntimeError):
        enc.encode(_chunks()[0])
    abandoned = StreamEncoder("opus")
    abandoned.encode(_chunks()[0])
    abandoned.close()


def test_empty_chunk_is_harmless() -> None:
    enc = StreamEncoder("flac")
    enc.encode(np.zeros(0, dtype=np.float32))
    data = enc.encode(_chunks()[0]) + enc.flush()
    assert decode(data, "flac")[2] == pytest.approx(CHUNK_SECONDS[0], abs=0.01)


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_ffprobe_accepts(fmt: str, tmp_path) -> None:
    path = tmp_path / f"speech.{fmt}"
    path.write_bytes(_encode_all(fmt)[1])
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_type,channels", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "codec_type=audio" in result.stdout and "channels=1" in result.stdout
