"""``POST /dev/captioned_speech``: speech with word timestamps, as Kokoro-FastAPI serves it.

The body is ``/v1/audio/speech``'s (Kokoro-FastAPI's ``CaptionedSpeechRequest``: its
``stream`` defaults to true, ``response_format`` to mp3) plus ``return_timestamps``
(default true). ``stream_format`` is ignored here: the streamed answer is NDJSON.

* ``stream: false``: one JSON object, ``{"audio": base64 of the whole file,
  "audio_format": content type, "timestamps": [{"word", "start_time", "end_time"}]}``
  (``timestamps`` null when not asked for).
* ``stream: true``: ``application/x-ndjson``, one such object per line as the audio is
  made: that line's encoded bytes and the words its audio finished (absolute seconds).
  Concatenated, the lines' audio is one file. ``audio_format`` is the content type
  (``audio/mpeg``), as in Kokoro-FastAPI.

Errors before the first byte are the OpenAI JSON errors of ``/v1/audio/speech``; a
failure mid-stream ends the body with one line ``{"error": {...}}`` of the same shape.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from fastkokoro_wyoming.audio import StreamEncoder
from fastkokoro_wyoming.engine.serving.timing import WordTiming
from fastkokoro_wyoming.http_api.errors import invalid, mid_stream_error
from fastkokoro_wyoming.http_api.params import parse_speech_body
from fastkokoro_wyoming.http_api.speech import app_engine, encode_chunks, read_json
from fastkokoro_wyoming.http_api.state import STATE_KEY

_LOGGER = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


async def captioned_speech(request: web.Request) -> web.StreamResponse:
    """Synthesize ``input`` and say when each word is heard (see the module docstring)."""
    engine = app_engine(request)
    state = request.app[STATE_KEY]
    received = time.perf_counter()
    body = await read_json(request)
    params = parse_speech_body(body, state.settings.default_format, state.voice_map)
    wanted = body.get("return_timestamps")
    if wanted is not None and not isinstance(wanted, bool):
        raise invalid("'return_timestamps' must be true or false.", "return_timestamps")
    timestamps = wanted is not False
    prepared = engine.prepare(params.request)
    state.metrics.observe_request(params.fmt)

    chunks: AsyncGenerator[Any, None]
    chunks = engine.synthesize_timed(prepared) if timestamps else engine.synthesize(prepared)
    async with contextlib.aclosing(chunks):  # closing the generator stops synthesis
        first = await anext(chunks, None)  # an EngineError here is still a JSON error
        encoder = await asyncio.to_thread(StreamEncoder, params.fmt)
        encoded = encode_chunks(first, chunks, encoder)
        if not params.stream:
            audio, words = bytearray(), []
            async with contextlib.aclosing(encoded):
                async for data, finished in encoded:
                    audio += data
                    words += finished
            state.metrics.observe_ttfa(time.perf_counter() - received)
            return web.json_response(
                _line(bytes(audio), encoder.content_type, words if timestamps else None),
                headers=_headers(params.fmt),
            )
        state.metrics.stream_started()
        try:
            return await _stream_lines(request, encoded, encoder, received, params.fmt)
        finally:
            state.metrics.stream_finished()


def _line(audio: bytes, content_type: str, words: list[WordTiming] | None) -> dict:
    return {
        "audio": base64.b64encode(audio).decode(),
        "audio_format": content_type,
        "timestamps": None if words is None else [w.as_dict() for w in words],
    }


def _headers(fmt: str) -> dict[str, str]:
    return {
        "Content-Disposition": f"attachment; filename=speech.{fmt}",
        "X-Accel-Buffering": "no",
        "Cache-Control": "no-cache",
    }


def _ndjson(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


async def _stream_lines(
    request: web.Request,
    encoded: AsyncGenerator[tuple[bytes, tuple[WordTiming, ...]], None],
    encoder: StreamEncoder,
    received: float,
    fmt: str,
) -> web.StreamResponse:
    """One NDJSON line per encoded piece, with the words that finished in it."""
    metrics = request.app[STATE_KEY].metrics
    response = web.StreamResponse(headers={"Content-Type": NDJSON, **_headers(fmt)})
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent_first = False
    try:
        async with contextlib.aclosing(encoded):
            async for data, words in encoded:
                await response.write(_ndjson(_line(data, encoder.content_type, list(words))))
                if not sent_first:
                    sent_first = True
                    metrics.observe_ttfa(time.perf_counter() - received)
        await response.write_eof()
    except ConnectionResetError:
        _LOGGER.info("Client went away mid-stream; synthesis stopped")
    except Exception as err:  # after the headers: end with an error line, never hang
        error = mid_stream_error(err, metrics)
        with contextlib.suppress(ConnectionResetError):
            await response.write(_ndjson(error))
            await response.write_eof()
    return response
