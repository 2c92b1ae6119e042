"""Python API for people who want speech without a server.

    from fastkokoro_wyoming import FastKokoro

    tts = FastKokoro(model="kokoro.onnx", voices="voices/")   # or FastKokoro() for the defaults
    Path("hi.mp3").write_bytes(tts.create("Hello there!", voice="af_heart",
                                          response_format="mp3"))
    for chunk in tts.stream("A long story ...", response_format="pcm"):
        player.write(chunk)

The engine is asynchronous; this wrapper runs it on a private event loop in a
background thread, so plain synchronous code can call it from anywhere.
"""

from __future__ import annotations

import asyncio
import io
import threading
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .assets import load_engine
from .audio import StreamEncoder, float_to_pcm16
from .config import Config, load_config
from .engine import Engine, SynthesisRequest, VoiceInfo

_DONE = object()


class FastKokoro:
    """Kokoro TTS in-process: ``create`` returns a whole file, ``stream`` yields its bytes."""

    def __init__(
        self,
        model: str | Path | None = None,
        voices: str | Path | None = None,
        *,
        config: Config | str | Path | None = None,
        **overrides: Any,
    ) -> None:
        """``model``/``voices``: local files; ``config``: a Config or YAML path; ``overrides``:
        key paths with ``__`` for dots, e.g. ``engine__runtime__providers=("cuda", "cpu")``."""
        flat = {k.replace("__", "."): v for k, v in overrides.items()}
        if model is not None:
            flat["engine.model.path"] = str(model)
        if voices is not None:
            flat["engine.model.voices"] = str(voices)
        if isinstance(config, Config):
            cfg = config if not flat else load_config(environ={}, overrides=flat)
        else:
            cfg = load_config(config, environ={}, overrides=flat)
        self.config = cfg
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="fastkokoro-api", daemon=True
        )
        self._thread.start()
        self.engine: Engine = self._call(load_engine(cfg.engine))

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def voices(self) -> list[VoiceInfo]:
        return self.engine.voices()

    @property
    def sample_rate(self) -> int:
        return self.engine.sample_rate

    def create(
        self,
        text: str,
        voice: str | None = None,
        *,
        speed: float = 1.0,
        lang: str | None = None,
        response_format: str = "wav",
    ) -> bytes:
        """The whole file (``wav`` gets a complete RIFF header; ``pcm`` is s16le 24 kHz)."""
        if response_format == "wav":
            pcm = b"".join(self.stream(text, voice, speed=speed, lang=lang, response_format="pcm"))
            buf = io.BytesIO()
            with wave.open(buf, "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(self.sample_rate)
                w.writeframes(pcm)
            return buf.getvalue()
        return b"".join(
            self.stream(text, voice, speed=speed, lang=lang, response_format=response_format)
        )

    def stream(
        self,
        text: str,
        voice: str | None = None,
        *,
        speed: float = 1.0,
        lang: str | None = None,
        response_format: str = "pcm",
    ) -> Iterator[bytes]:
        """Encoded bytes as each segment is ready (one container for the whole text)."""
        agen = self.astream(text, voice, speed=speed, lang=lang, response_format=response_format)
        try:
            while True:
                chunk = self._call(_next(agen))
                if chunk is _DONE:
                    return
                yield chunk
        finally:
            self._call(agen.aclose())

    def samples(
        self, text: str, voice: str | None = None, *, speed: float = 1.0, lang: str | None = None
    ) -> np.ndarray:
        """The whole utterance as float32 samples at :attr:`sample_rate`."""

        async def collect() -> np.ndarray:
            req = SynthesisRequest(text, voice=voice, lang=lang, speed=speed)
            parts = [c async for c in self.engine.synthesize(req)]
            return np.concatenate(parts) if parts else np.zeros(0, np.float32)

        return self._call(collect())

    async def astream(
        self,
        text: str,
        voice: str | None = None,
        *,
        speed: float = 1.0,
        lang: str | None = None,
        response_format: str = "pcm",
    ) -> AsyncIterator[bytes]:
        """Async variant of :meth:`stream`; runs on this object's own loop."""
        req = SynthesisRequest(text, voice=voice, lang=lang, speed=speed)
        prepared = self.engine.prepare(req)
        encoder = None if response_format == "pcm" else StreamEncoder(response_format)
        try:
            async for chunk in self.engine.synthesize(prepared):
                data = float_to_pcm16(chunk) if encoder is None else encoder.encode(chunk)
                if data:
                    yield data
            if encoder is not None:
                tail = encoder.flush()
                if tail:
                    yield tail
        finally:
            if encoder is not None:
                encoder.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.engine.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FastKokoro:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _next(agen: AsyncIterator[bytes]) -> Any:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _DONE


__all__ = ["FastKokoro"]
