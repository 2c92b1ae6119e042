"""Reading encoded audio back (PyAV), as a client would."""

from __future__ import annotations

import io

import av

from fastkokoro_wyoming.engine.types import SAMPLE_RATE


def decode(data: bytes, fmt: str) -> tuple[int, int, float]:
    """(sample_rate, channels, seconds) of ``data`` as PyAV decodes it."""
    if fmt == "pcm":
        return SAMPLE_RATE, 1, len(data) / 2 / SAMPLE_RATE
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        samples = 0
        rate = channels = 0
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate
            channels = len(frame.layout.channels)
    return rate, channels, samples / rate
