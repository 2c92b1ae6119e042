"""PCM helpers and the per-response streaming encoder shared by both front ends."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import av
import numpy as np

from fastkokoro_wyoming.engine.serving.pcm import default_kernels
from fastkokoro_wyoming.engine.types import SAMPLE_RATE

# opus is served as an Ogg Opus file, whose registered type is audio/ogg (RFC 7845);
# audio/opus names bare RTP payloads, so browsers and players handle audio/ogg better.
CONTENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "mp3": "audio/mpeg",
        "opus": "audio/ogg",
        "aac": "audio/aac",
        "flac": "audio/flac",
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }
)
FORMATS: tuple[str, ...] = tuple(CONTENT_TYPES)

# format -> (PyAV codec, container format, bit rate or 0 for the codec default)
_CODECS: Mapping[str, tuple[str, str, int]] = MappingProxyType(
    {
        "mp3": ("libmp3lame", "mp3", 64_000),
        "opus": ("libopus", "ogg", 32_000),
        "aac": ("aac", "adts", 64_000),
        "flac": ("flac", "flac", 0),
    }
)
# Ogg holds pages until they cover 1 s by default; 100 ms pages keep opus streaming.
_CONTAINER_OPTIONS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {"ogg": MappingProxyType({"page_duration": "100000"})}
)
_UNKNOWN_SIZE = 0xFFFFFFFF


def float_to_pcm16(samples: np.ndarray) -> bytes:
    """float32 [-1, 1] mono samples -> signed 16-bit little-endian bytes (clipped).

    ``(np.clip(x, -1, 1) * 32767).astype("<i2")``, byte for byte, in one numba pass
    when numba is installed (engine/serving/pcm.py).
    """
    return default_kernels().to_pcm16(samples)


def streaming_wav_header(sample_rate: int = SAMPLE_RATE, channels: int = 1) -> bytes:
    """44-byte RIFF header for s16le whose sizes are unknown (0xFFFFFFFF).

    The total length is not known when the first bytes go out; players and FFmpeg
    read a data chunk of size 0xFFFFFFFF up to the end of the stream.
    """
    block_align = channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16
        )
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


class _Sink:
    """Write-only file object for PyAV: collects what the muxer writes until popped.

    It has no seek/tell on purpose, so FFmpeg treats the output as a non-seekable
    stream: it flushes every packet and never goes back to patch headers.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def pop(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class StreamEncoder:
    """One encoder per response: float32 mono chunks in, container bytes out as they come.

    A single container spans the whole response, so the client gets one valid file
    (not a file per sentence). Encoding is CPU work: callers on an event loop should
    run ``encode``/``flush`` in a worker thread, one call at a time.
    """

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE) -> None:
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"unknown audio format {fmt!r}; expected one of {FORMATS}")
        self.format = fmt
        self.content_type = CONTENT_TYPES[fmt]
        self.sample_rate = sample_rate
        self.samples_in = 0
        self._closed = False
        self._header = streaming_wav_header(sample_rate) if fmt == "wav" else b""
        self._container: Any = None  # av's OutputContainer (PyAV has no public stubs)
        self._stream: Any = None  # its AudioStream
        self._sink = _Sink()
        if fmt in _CODECS:
            codec, container_format, bit_rate = _CODECS[fmt]
            options = dict(_CONTAINER_OPTIONS.get(container_format, {}))
            self._container = av.open(self._sink, "w", format=container_format, options=options)
            self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")
            if bit_rate:
                self._stream.bit_rate = bit_rate

    @property
    def duration(self) -> float:
        """Seconds of audio fed in so far."""
        return self.samples_in / self.sample_rate

    def encode(self, chunk: np.ndarray) -> bytes:
        """Encode one chunk; returns the bytes the container produced (may be empty)."""
        if self._closed:
            raise RuntimeError("encoder already flushed")
        samples = np.ascontiguousarray(np.asarray(chunk, dtype=np.float32).reshape(-1))
        self.samples_in += samples.size
        out, self._header = self._header, b""
        if self._container is None:
            return out + float_to_pcm16(samples)
        if samples.size:
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            self._mux(frame)
        return out + self._sink.pop()

    def flush(self) -> bytes:
        """Drain the codec and write the trailer; the encoder is finished afterwards."""
        if self._closed:
            return b""
        self._closed = True
        out, self._header = self._header, b""
        if self._container is None:
            return out
        self._mux(None)
        self._container.close()
        return out + self._sink.pop()

    def close(self) -> None:
        """Release the codec without draining it (the response was abandoned)."""
        if not self._closed and self._container is not None:
            self._container.close()
        self._closed = True

    def _mux(self, frame: av.AudioFrame | None) -> None:
        assert self._container is not None and self._stream is not None
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
