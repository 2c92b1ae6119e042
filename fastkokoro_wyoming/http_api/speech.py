"""``POST /v1/audio/speech``: validate, make the first chunk, then stream the audio.

Every check runs, and the first audio chunk is made, before any header is sent, so
a refused request is always a proper JSON error. Audio then streams through one
StreamEncoder per response, encoded in worker threads to keep the loop free.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
from aiohttp import web

from fastkokoro_wyoming.audio import StreamEncoder
from fastkokoro_wyoming.engine.serving.timing import TimedChunk, WordTiming
from fastkokoro_wyoming.http_api.errors import ApiError, mid_stream_error
from fastkokoro_wyoming.http_api.metrics import Metrics
from fastkokoro_wyoming.http_api.params import SpeechParams, parse_speech_body
from fastkokoro_wyoming.http_api.state import ENGINE_KEY, STATE_KEY, SpeechEngine

_LOGGER = logging.getLogger(__name__)


def app_engine(request: web.Request) -> SpeechEngine:
    """The app's engine. It can speak from the moment the listeners open (the daemon
    starts them after the model is loaded; what is prepared later only speeds it up)."""
    return request.app[ENGINE_KEY]


async def speech(request: web.Request) -> web.StreamResponse:
    """Synthesize speech; streamed unless ``stream=false``, SSE if ``stream_format=sse``.

    The engine validates once (``prepare``) and synthesizes what it prepared, and the
    first chunk is awaited before the headers go out: any refusal up to that point is
    still a JSON error with a 4xx/5xx status, which is what the openai SDK can read.
    """
    engine = app_engine(request)
    state = request.app[STATE_KEY]
    received = time.perf_counter()
    params = parse_speech_body(
        await read_json(request), state.settings.default_format, state.voice_map
    )
    if params.timestamps and params.stream_format != "sse":
        raise ApiError(
            400,
            "'timestamps' needs stream_format 'sse' (word timings travel as SSE events); "
            "for timestamps with whole audio use POST /dev/captioned_speech.",
            param="timestamps",
            code="invalid_value",
        )
    if params.instructions and not state.instructions_logged:
        state.instructions_logged = True
        _LOGGER.info("Ignoring 'instructions': Kokoro has no prompt-controlled style")
    prepared = engine.prepare(params.request)
    state.metrics.observe_request(params.fmt)

    if params.timestamps:
        chunks: AsyncGenerator[Any, None] = engine.synthesize_timed(prepared)
    else:
        chunks = engine.synthesize(prepared)
    async with contextlib.aclosing(chunks):  # closing the generator stops synthesis on disconnect
        first = await anext(chunks, None)  # an EngineError here is still a JSON error
        encoder = await asyncio.to_thread(StreamEncoder, params.fmt)
        encoded = encode_chunks(first, chunks, encoder)
        if not params.stream and params.stream_format == "audio":
            async with contextlib.aclosing(encoded):
                body = b"".join([part async for part, _ in encoded])
            state.metrics.observe_ttfa(time.perf_counter() - received)
            _observe_rtf(state.metrics, received, encoder)
            return web.Response(body=body, headers=_audio_headers(params, encoder))
        state.metrics.stream_started()
        try:
            return await _stream(request, params, encoded, encoder, received)
        finally:
            state.metrics.stream_finished()


async def encode_chunks(
    first: np.ndarray | TimedChunk | None,
    chunks: AsyncGenerator[np.ndarray, None] | AsyncGenerator[TimedChunk, None],
    encoder: StreamEncoder,
) -> AsyncGenerator[tuple[bytes, tuple[WordTiming, ...]], None]:
    """Encoded bytes as they come, each with the words finished in them (timed chunks).
    An encoder may hold a chunk's audio back (mp3 frames): its words wait with it, so a
    word is never announced before the bytes that say it."""
    held: tuple[WordTiming, ...] = ()
    chunk = first
    while chunk is not None:
        audio = chunk.audio if isinstance(chunk, TimedChunk) else chunk
        held += chunk.words if isinstance(chunk, TimedChunk) else ()
        data = await asyncio.to_thread(encoder.encode, audio) if audio.size else b""
        if data:
            yield data, held
            held = ()
        chunk = await anext(chunks, None)
    tail = await asyncio.to_thread(encoder.flush)
    if tail or held:
        yield tail, held


def _audio_headers(params: SpeechParams, encoder: StreamEncoder) -> dict[str, str]:
    return {
        "Content-Type": encoder.content_type,
        "Content-Disposition": f"attachment; filename=speech.{params.fmt}",
        "X-Accel-Buffering": "no",
        "Cache-Control": "no-cache",
    }


_SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


async def _stream(
    request: web.Request,
    params: SpeechParams,
    encoded: AsyncGenerator[tuple[bytes, tuple[WordTiming, ...]], None],
    encoder: StreamEncoder,
    received: float,
) -> web.StreamResponse:
    """Send encoded audio as it comes: raw chunked bytes, or SSE delta events (each
    followed, with ``timestamps``, by the words its audio finished)."""
    metrics = request.app[STATE_KEY].metrics
    sse = params.stream_format == "sse"
    response = web.StreamResponse(headers=_SSE_HEADERS if sse else _audio_headers(params, encoder))
    response.enable_chunked_encoding()
    await response.prepare(request)
    sent_first = False
    try:
        async with contextlib.aclosing(encoded):
            async for data, words in encoded:
                if data:
                    await response.write(_sse(_delta(data)) if sse else data)
                if sse and words:
                    await response.write(_sse(timestamps_event(words)))
                if not sent_first:
                    sent_first = True
                    metrics.observe_ttfa(time.perf_counter() - received)
        if sse:
            await response.write(_sse(_done(params, encoder)))
        await response.write_eof()
    except ConnectionResetError:
        _LOGGER.info("Client went away mid-stream; synthesis stopped")
        return response
    except Exception as err:  # after the headers: end the stream honestly, never hang
        error = mid_stream_error(err, metrics)
        if not sse:
            # Headers are gone: the only honest signal left is a truncated chunked body.
            _abort(request)
            return response
        failure = {"type": "error", **error}
        with contextlib.suppress(ConnectionResetError):
            await response.write(_sse(failure))
            await response.write_eof()
        return response
    _observe_rtf(metrics, received, encoder)
    return response


def timestamps_event(words: tuple[WordTiming, ...]) -> dict:
    """The SSE extension's event (``"timestamps": true``): words finished so far."""
    return {"type": "speech.audio.timestamps", "timestamps": [w.as_dict() for w in words]}


def _delta(data: bytes) -> dict:
    return {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}


def _done(params: SpeechParams, encoder: StreamEncoder) -> dict:
    """Final SSE event. Usage is an estimate: ~4 characters a token, 20 ms an audio token."""
    input_tokens = math.ceil(len(params.request.text) / 4)
    output_tokens = math.ceil(encoder.duration * 50)
    usage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    return {"type": "speech.audio.done", "usage": usage}


def _sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.close()


def _observe_rtf(metrics: Metrics, started: float, encoder: StreamEncoder) -> None:
    if encoder.duration > 0:
        metrics.observe_rtf((time.perf_counter() - started) / encoder.duration)


async def read_json(request: web.Request) -> Any:
    raw = await request.read()  # raises 413 past client_max_size
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(
            400, f"The request body is not valid JSON: {exc}", code="invalid_json"
        ) from None
