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
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .assets import load_engine
from .audio import StreamEncoder, float_to_pcm16
from .config import Config, load_config
from .engine import Engine, SynthesisRequest, VoiceInfo
from .engine.serving.timing import WordTiming

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
        speed: float | None = None,
        lang: str | None = None,
        response_format: str = "wav",
        timestamps: bool = False,
    ) -> Any:
        """The whole file (``wav`` gets a complete RIFF header; ``pcm`` is s16le 24 kHz).

        ``timestamps=True``: ``(file, words)`` instead, ``words`` a list of
        :class:`WordTiming` (``.word`` as written, ``.start``/``.end`` in seconds)."""
        if timestamps:
            fmt = "pcm" if response_format == "wav" else response_format
            parts = list(self.stream(text, voice, speed=speed, lang=lang,
                                     response_format=fmt, timestamps=True))  # fmt: skip
            data = b"".join(p for p, _ in parts)
            words = [w for _, ws in parts for w in ws]
            return (_wav(data, self.sample_rate) if response_format == "wav" else data), words
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
        speed: float | None = None,
        lang: str | None = None,
        response_format: str = "pcm",
        timestamps: bool = False,
    ) -> Iterator[Any]:
        """Encoded bytes as each segment is ready (one container for the whole text).

        ``timestamps=True``: ``(bytes, words)`` pairs instead, ``words`` the
        :class:`WordTiming` s that finished in those bytes."""
        agen = self.astream(
            text, voice, speed=speed, lang=lang, response_format=response_format,
            timestamps=timestamps,
        )  # fmt: skip
        try:
            while True:
                chunk = self._call(_next(agen))
                if chunk is _DONE:
                    return
                yield chunk
        finally:
            self._call(agen.aclose())

    def samples(
        self,
        text: str,
        voice: str | None = None,
        *,
        speed: float | None = None,
        lang: str | None = None,
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
        speed: float | None = None,
        lang: str | None = None,
        response_format: str = "pcm",
        timestamps: bool = False,
    ) -> AsyncGenerator[Any, None]:
        """Async variant of :meth:`stream`; runs on this object's own loop."""
        req = SynthesisRequest(text, voice=voice, lang=lang, speed=speed)
        prepared = self.engine.prepare(req)
        encoder = None if response_format == "pcm" else StreamEncoder(response_format)
        held: tuple[WordTiming, ...] = ()  # words wait for the bytes that say them
        try:
            run = self.engine.synthesize_timed if timestamps else self.engine.synthesize
            chunks: AsyncGenerator[Any, None] = run(prepared)
            async for chunk in chunks:
                audio = chunk.audio if timestamps else chunk
                held += chunk.words if timestamps else ()
                data = float_to_pcm16(audio) if encoder is None else encoder.encode(audio)
                if data:
                    yield (data, held) if timestamps else data
                    held = ()
            tail = encoder.flush() if encoder is not None else b""
            if tail or (timestamps and held):
                yield (tail, held) if timestamps else tail
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


def _wav(pcm: bytes, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return buf.getvalue()


async def _next(agen: AsyncGenerator[bytes, None]) -> Any:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return _DONE


__all__ = ["FastKokoro", "WordTiming"]
