"""The read-only routes: model catalog, voices, health, metrics and the OpenAPI document.

They answer what OpenAI clients and Open WebUI probe before they speak (``/v1/models``,
``/v1/audio/voices``), what orchestrators poll (``/health``, ``/metrics``) and what
tools read to generate clients (``/openapi.json``).
"""

from __future__ import annotations

from aiohttp import web

from fastkokoro_wyoming.engine.types import VoiceInfo
from fastkokoro_wyoming.http_api.errors import ApiError, invalid
from fastkokoro_wyoming.http_api.params import MODEL_IDS
from fastkokoro_wyoming.http_api.state import ENGINE_KEY, STATE_KEY

MODEL_CREATED = 1686935002  # fixed, like OpenAI's tts-1 entry; clients only display it
OWNER = "fastkokoro-wyoming"


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": OWNER}


async def list_models(request: web.Request) -> web.Response:
    """``GET /v1/models``: the ids ``speech`` accepts, so SDK model pickers list them."""
    return web.json_response({"object": "list", "data": [_model(m) for m in MODEL_IDS]})


async def get_model(request: web.Request) -> web.Response:
    """``GET /v1/models/{id}``: one entry, or OpenAI's 404 ``model_not_found``."""
    model_id = request.match_info["model_id"]
    if model_id not in MODEL_IDS:
        raise ApiError(
            404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found"
        )
    return web.json_response(_model(model_id))


async def list_audio_models(request: web.Request) -> web.Response:
    """``GET /v1/audio/models``: Open WebUI's model list, in its ``{"models": [...]}`` shape."""
    return web.json_response({"models": [{"id": m} for m in MODEL_IDS]})


_BOOLS = ("1", "true", "yes", "0", "false", "no", "")


async def list_voices(request: web.Request) -> web.Response:
    """``GET /v1/audio/voices``: installed voices, so UIs offer what the engine can speak.

    Open WebUI reads ``voices[].id``/``name``; ``?legacy=true`` gives bare names, the
    shape Kokoro-FastAPI clients expect.
    """
    voices = request.app[ENGINE_KEY].voices()
    legacy = request.query.get("legacy", "false").lower()
    if legacy not in _BOOLS:
        raise invalid("'legacy' must be true or false.", "legacy", "invalid_type")
    if legacy in ("1", "true", "yes"):
        return web.json_response({"voices": [v.name for v in voices]})
    return web.json_response({"voices": [_voice_entry(v) for v in voices]})


def _voice_entry(v: VoiceInfo) -> dict:
    """One voice; a preset (engine.voices.presets) also says what it resolves to."""
    entry: dict = {
        "id": v.name,
        "name": v.name,
        "language": v.locale,
        "lang_code": v.lang,
        "gender": v.gender,
    }
    if v.preset is not None:
        entry["preset"] = {"voice": v.preset, "speed": v.speed, "volume_db": v.volume_db}
    return entry


async def health(request: web.Request) -> web.Response:
    """``GET /health``: 200 whenever it answers: the listeners open once the model can
    speak. ``preparing`` lists one-time work still under way in the background (the
    windowed decoder's graphs, a voice's norm priors: until they are ready that voice's
    replies are decoded whole, slower to first audio but the same speech).

    Open even with an API key: load balancers and container health checks carry none.
    """
    engine = request.app[ENGINE_KEY]
    # After an idle unload (engine.idle_unload_s) the server is still healthy: the next
    # request reloads the model.
    residency = engine.residency
    model = "unloaded" if residency is not None and not residency.loaded else "loaded"
    return web.json_response({"status": "ok", "model": model, "preparing": engine.preparing})


async def metrics_text(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus exposition of this app's counters and histograms."""
    provider = request.app[ENGINE_KEY].provider
    metrics = request.app[STATE_KEY].metrics
    return web.Response(
        body=metrics.exposition(provider),
        headers={"Content-Type": metrics.content_type, "X-Content-Type-Options": "nosniff"},
    )


async def openapi(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document built once for this app's settings."""
    return web.json_response(request.app[STATE_KEY].spec)
