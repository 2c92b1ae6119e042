"""One-time work never stands between a request and its audio.

* A first start (an empty cache: no windowed graphs, no priors) serves at once: replies are
  decoded whole while the graphs are derived and the default voice is calibrated in the
  background; ``/health`` lists that work; then the same engine windows its segments.
* A voice calibrating in the background never makes a request wait behind it: checked by
  the order of model calls (a request's job queued while a calibration decode runs aborts
  that decode), not by wall time.
* Stopping mid-calibration is clean: no traceback, no "scheduler is closed".

Costs (2 vCPUs, idle): the first start ~30-40 s (one voice's full calibration), the order
test ~20-40 s, the stop test ~10 s; several times that on a shared, saturated machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading

import aiohttp
import numpy as np

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import Config, HttpConfig, WyomingConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from tests.support.engines import engine_config
from tests.support.speech import transcribe, word_accuracy

FOX = "The quick brown fox jumps over the lazy dog."


async def _chunks(engine: object, text: str, **kw: object) -> list[np.ndarray]:
    """The reply's chunks; ``admitted``: never refused (the machine is shared: admission's
    wait estimate is not what these tests check)."""
    prep = engine.prepare(SynthesisRequest(text, **kw))  # type: ignore[attr-defined]
    return [c async for c in engine.synthesize(prep, admitted=True)]  # type: ignore[attr-defined]


async def _until(condition, timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.25)):
        if condition():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"not {what} after {timeout:.0f} s")


async def test_a_first_start_serves_whole_then_switches_to_windows(
    kokoro_assets, engine, tmp_path, caplog, monkeypatch
) -> None:
    """The first-start path on an empty priors cache; the graphs are copied from the
    session engine's cache and ``derive`` finds them (deriving itself, ~25 CPU s at nice
    19, would starve on a shared test machine; bench/startup_bench.py times it)."""
    from fastkokoro_wyoming.daemon import start
    from fastkokoro_wyoming.engine import builder

    graphs = engine.windowed.decoder.graphs.directory
    copy = tmp_path / "windowed" / graphs.name
    copy.mkdir(parents=True)
    for f in graphs.iterdir():
        if f.is_file():
            (copy / f.name).symlink_to(f)
    monkeypatch.setattr(builder, "graphs_cached", lambda model, cache_dir: False)
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming")
    cfg = engine_config(*kokoro_assets)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, cache_dir=str(tmp_path)))
    engine = await load_engine(cfg)
    daemon = await start(
        Config(
            engine=cfg,
            http=HttpConfig(host="127.0.0.1", port=0),
            wyoming=WyomingConfig(host="127.0.0.1", port=0, zeroconf=False),
        ),
        engine=engine,
    )
    try:
        assert engine.windowed is not None and engine.windowed.decoder is None
        assert "First start with this model" in caplog.text
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{daemon.http.port}/health") as r:  # type: ignore[union-attr]
                health = await r.json()
        assert r.status == 200 and health["status"] == "ok"
        assert [t["task"] for t in health["preparing"]] == [
            "Deriving the windowed decoder's graphs"
        ]
        # served meanwhile, decoded whole: one chunk for the one segment
        whole = await _chunks(engine, FOX)
        assert len(whole) == 1
        await _until(lambda: engine.windowed.decoder is not None, 600, "derived")
        voice = engine.voice_store.resolve(cfg.default_voice)
        await _until(lambda: engine.windowed.has_priors(voice.name), 900, "calibrated")
        assert engine.preparing == []
        windowed = await _chunks(engine, FOX)
        assert len(windowed) >= 3
        assert np.concatenate(windowed).size == whole[0].size  # same durations, same length
        heard = await asyncio.to_thread(transcribe, np.concatenate(windowed))
        assert word_accuracy(FOX, heard) >= 0.85, heard
        progress = [r.getMessage() for r in caplog.records if "done, about" in r.getMessage()]
        assert progress, "no progress line at INFO"
        assert "Traceback" not in caplog.text
    finally:
        await daemon.stop()  # owns_engine is False: close it here
        engine.close()


class CallOrder:
    """Records, in order, the engine's model calls: request jobs queued and started, and
    background calibration decodes started and how they ended."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._step = 0

    def add(self, kind: str, ident: int = 0) -> None:
        with self._lock:
            self.events.append((kind, ident))

    def next_step(self) -> int:
        with self._lock:
            self._step += 1
            return self._step


async def test_no_request_waits_behind_a_calibration_decode(engine, monkeypatch) -> None:
    backend = engine.windowed
    order = CallOrder()
    original_stats = backend._stats
    original_submit = engine.scheduler.submit

    def stats(decoder, ids, style, options):
        step = order.next_step()
        order.add("bg-start", step)
        try:
            out = original_stats(decoder, ids, style, options)
        except Exception:
            order.add("bg-aborted", step)
            raise
        order.add("bg-done", step)
        return out

    def submit(fn, priority, abort=None, *, admit=True, background=False):
        if background:
            return original_submit(fn, priority, abort, admit=admit, background=True)

        def traced():
            order.add("req-start")
            return fn()

        job = original_submit(traced, priority, abort, admit=admit, background=False)
        order.add("req-queued")
        return job

    monkeypatch.setattr(backend, "_stats", stats)
    monkeypatch.setattr(engine.scheduler, "submit", submit)
    backend.forget("am_puck")
    voice = engine.voice_store.resolve("am_puck")
    await _chunks(engine, "Hello there.", voice="am_puck")  # starts its calibration
    preempted = 0
    for _ in range(8):  # short requests for the default voice while it calibrates
        await _until(lambda: order.events and order.events[-1][0] == "bg-start", 120, "running")
        await _chunks(engine, "Yes, of course.")
        if backend.has_priors(voice.name):
            break
    await _until(lambda: backend.has_priors(voice.name), 900, "calibrated")
    # Every request job queued while a calibration decode ran started before that decode
    # finished: the decode was aborted (and redone later), never waited for.
    running: int | None = None
    waited_behind = 0
    pending_requests = 0
    for kind, ident in order.events:
        if kind == "bg-start":
            running = ident
        elif kind in ("bg-done", "bg-aborted"):
            if kind == "bg-done" and pending_requests:
                waited_behind += 1
            preempted += kind == "bg-aborted"
            running = None
        elif kind == "req-queued" and running is not None:
            pending_requests += 1
        elif kind == "req-start":
            pending_requests = max(0, pending_requests - 1)
    assert preempted >= 1, order.events
    # one may finish inside the watcher's few-millisecond poll, never a pattern
    assert waited_behind <= 1, order.events


async def test_stopping_mid_calibration_logs_no_traceback(kokoro_assets, caplog) -> None:
    caplog.set_level(logging.INFO)
    engine = await load_engine(engine_config(*kokoro_assets))
    backend = engine.windowed
    backend.forget("bm_lewis")
    await _chunks(engine, "Hello there.", voice="bm_lewis")  # starts its calibration
    await _until(lambda: backend.preparing(), 60, "calibrating")
    await asyncio.sleep(0.5)  # a decode is running
    await asyncio.to_thread(engine.close)
    await asyncio.sleep(0.5)  # done-callbacks of the cancelled jobs run now
    assert "Traceback" not in caplog.text
    assert "scheduler is closed" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
