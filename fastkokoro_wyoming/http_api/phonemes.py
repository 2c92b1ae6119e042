"""The phoneme routes, in Kokoro-FastAPI's shapes (third-party clients call them).

* ``POST /dev/phonemize`` ``{"text", "language"}`` -> ``{"phonemes", "tokens"}``: what
  the model would be given for ``text`` (cleanup, typography, the lexicon and inline
  ``[word](/phonemes/)`` applied), and its ids in the model's vocabulary. Kokoro-FastAPI
  answers ``tokens: []``; the ids are more useful and the shape is the same.
* ``POST /dev/generate_from_phonemes`` ``{"phonemes", "voice", "speed"?,
  "response_format"?}`` -> audio (wav unless asked), streamed like ``/v1/audio/speech``.
  Every symbol must be one the model has: the first that is not is a 400 naming it.

Both need the API key like speech (``errors.auth_middleware``: they are not open paths)
and are described in ``/openapi.json`` (:func:`openapi_paths`). G2P runs in a worker
thread; the audio goes through the engine's scheduler like any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fastkokoro_wyoming.audio import FORMATS, StreamEncoder
from fastkokoro_wyoming.engine.errors import EngineError
from fastkokoro_wyoming.engine.types import MAX_SPEED, MIN_SPEED
from fastkokoro_wyoming.http_api.errors import invalid, mid_stream_error
from fastkokoro_wyoming.http_api.params import map_voice
from fastkokoro_wyoming.http_api.speech import app_engine, encode_chunks, read_json
from fastkokoro_wyoming.http_api.state import STATE_KEY

_LOGGER = logging.getLogger(__name__)
DEFAULT_FORMAT = "wav"  # Kokoro-FastAPI's route answers wav


def _object(body: Any) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise invalid("The request body must be a JSON object.", None, "invalid_type")
    return body


def _string(body: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid(f"'{key}' is required.", key, "missing_required_parameter")
        return None
    if not isinstance(value, str):
        raise invalid(f"'{key}' must be a string.", key, "invalid_type")
    return value


def _renamed(err: EngineError, param: str) -> EngineError:
    """The engine names its own fields (``lang``, ``input``); these routes name theirs."""
    err.param = param
    return err


async def phonemize(request: web.Request) -> web.Response:
    """``POST /dev/phonemize``: the phonemes and model ids ``text`` becomes."""
    engine = app_engine(request)
    body = _object(await read_json(request))
    text = _string(body, "text", required=True) or ""
    language = _string(body, "language", required=False) or "a"
    try:
        phonemes, tokens = await asyncio.to_thread(engine.phonemize_ids, text, language)
    except EngineError as err:
        raise _renamed(err, "language" if err.param == "lang" else "text") from None
    return web.json_response({"phonemes": phonemes, "tokens": tokens})


def _speed(body: Mapping[str, Any]) -> float:
    speed = body.get("speed", 1.0)
    if speed is None:
        return 1.0
    if isinstance(speed, bool) or not isinstance(speed, int | float):
        raise invalid("'speed' must be a number.", "speed", "invalid_type")
    return float(speed)


async def generate_from_phonemes(request: web.Request) -> web.StreamResponse:
    """``POST /dev/generate_from_phonemes``: speak a phoneme string as written."""
    engine = app_engine(request)
    state = request.app[STATE_KEY]
    received = time.perf_counter()
    body = _object(await read_json(request))
    phonemes = _string(body, "phonemes", required=True) or ""
    voice = _string(body, "voice", required=False)
    fmt = _string(body, "response_format", required=False) or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise invalid(f"'response_format' must be one of: {', '.join(FORMATS)}.", "response_format")
    stream = body.get("stream", True)
    if not isinstance(stream, bool):
        raise invalid("'stream' must be true or false.", "stream", "invalid_type")
    voice = map_voice(voice, state.voice_map) if voice and voice.strip() else None
    prepared = engine.prepare_phonemes(phonemes, voice, _speed(body))
    state.metrics.observe_request(fmt)
    chunks = engine.synthesize(prepared)
    async with contextlib.aclosing(chunks):
        first = await anext(chunks, None)  # refused before the headers: still a JSON error
        encoder = await asyncio.to_thread(StreamEncoder, fmt)
        encoded = encode_chunks(first, chunks, encoder)
        headers = {
            "Content-Type": encoder.content_type,
            "Content-Disposition": f"attachment; filename=speech.{fmt}",
            "X-Accel-Buffering": "no",
            "Cache-Control": "no-cache",
        }
        if not stream:
            async with contextlib.aclosing(encoded):
                audio = b"".join([part async for part, _ in encoded])
            state.metrics.observe_ttfa(time.perf_counter() - received)
            return web.Response(body=audio, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        state.metrics.stream_started()
        try:
            async with contextlib.aclosing(encoded):
                first_write = True
                async for part, _ in encoded:
                    if part:
                        await response.write(part)
                    if first_write:
                        first_write = False
                        state.metrics.observe_ttfa(time.perf_counter() - received)
            await response.write_eof()
        except ConnectionResetError:
            _LOGGER.info("Client went away mid-stream; synthesis stopped")
        except Exception as err:  # after the headers: a cut body is the only signal left
            mid_stream_error(err, state.metrics)
            if request.transport is not None:
                request.transport.close()
        finally:
            state.metrics.stream_finished()
        return response


def add_phoneme_routes(app: web.Application) -> None:
    app.router.add_post("/dev/phonemize", phonemize)
    app.router.add_post("/dev/generate_from_phonemes", generate_from_phonemes)


# --- /openapi.json ------------------------------------------------------------------------

_REF = "#/components/schemas/"


def _errors() -> dict:
    error = {"content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}
    return {
        "400": {"description": "Invalid request; `error.param` names the field.", **error},
        "401": {"description": "Missing or wrong API key.", **error},
        "503": {"description": "Busy; see `Retry-After`.", **error},
    }


def _post(summary: str, operation: str, schema: str, responses: dict) -> dict:
    body = {"required": True, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}
    return {
        "post": {
            "summary": summary,
            "operationId": operation,
            "requestBody": body,
            "responses": {**responses, **_errors()},
        }
    }


def openapi_paths(audio: Mapping[str, Any]) -> dict:
    """The two routes for ``/openapi.json``; ``audio``: the speech route's audio content."""
    audio_only = {k: v for k, v in audio.items() if k.startswith("audio/")}
    return {
        "/dev/phonemize": _post(
            "Phonemes and model ids for a text (lexicon and inline phonemes applied)",
            "phonemize",
            "PhonemeRequest",
            {
                "200": {
                    "description": "What the model is given",
                    "content": {"application/json": {"schema": {"$ref": _REF + "Phonemes"}}},
                }
            },
        ),
        "/dev/generate_from_phonemes": _post(
            "Speak a phoneme string as written (streamed unless stream=false)",
            "generateFromPhonemes",
            "GenerateFromPhonemesRequest",
            {"200": {"description": "Audio", "content": audio_only}},
        ),
    }


def openapi_schemas() -> dict:
    return {
        "PhonemeRequest": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {
                    "type": "string",
                    "description": "Text; `[word](/phonemes/)` spans and the lexicon apply.",
                },
                "language": {
                    "type": ["string", "null"],
                    "default": "a",
                    "description": "A Kokoro code (a, b, e, f, h, i, j, p, z) or a locale "
                    "(en-US, fr-FR, ...).",
                },
            },
        },
        "Phonemes": {
            "type": "object",
            "required": ["phonemes", "tokens"],
            "properties": {
                "phonemes": {"type": "string", "description": "Kokoro's phoneme symbols."},
                "tokens": {
                    "type": "array",
                    "items": {"type": "integer"},
                    "description": "Their ids in the model's vocabulary.",
                },
            },
        },
        "GenerateFromPhonemesRequest": {
            "type": "object",
            "required": ["phonemes"],
            "properties": {
                "phonemes": {
                    "type": "string",
                    "description": "Kokoro phonemes; an unknown symbol is a 400 naming it.",
                },
                "voice": {
                    "type": ["string", "null"],
                    "description": "A voice or blend; the default voice if left out.",
                },
                "speed": {
                    "type": ["number", "null"],
                    "minimum": MIN_SPEED,
                    "maximum": MAX_SPEED,
                    "default": 1.0,
                },
                "response_format": {"enum": [*FORMATS, None], "default": DEFAULT_FORMAT},
                "stream": {"type": ["boolean", "null"], "default": True},
            },
        },
    }
