"""One-time work never stands between a request and its audio.

* A first start (an empty cache: no windowed graphs, no priors) serves at once: replies are
  decoded whole while the graphs are derived and the default voice is calibrated in the
  background; ``/health`` lists that work; then the same engine windows its segments.
* A voice calibrating in the background never makes a request wait behind it, and still
  finishes under a light steady load: checked on the model calls (how long a due request
  job had waited whenever a decode ran to its end), not on first-audio wall times.
* Graphs made on another CPU: their int8 check and timing run in the background too.
* Stopping mid-calibration is clean: no traceback, no "scheduler is closed".

Costs (2 vCPUs, idle): the first start ~30-40 s (one voice's full calibration), the int8
check ~10 s, the order test ~20-40 s, the stop test ~10 s; several times that on a shared,
saturated machine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import threading
import time

import aiohttp
import numpy as np

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import Config, HttpConfig, WyomingConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.serving.scheduler import (
    PREEMPT_MAX_WAIT_S,
    PREEMPT_SLACK_S,
    Priority,
)
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
        # quick priors serve; the full plan refines them in the background, last in line
        assert [t["task"] for t in engine.preparing] in (
            [],
            [f"Refining norm priors for {voice.name}"],
        )
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


async def test_a_new_cpu_checks_the_int8_graphs_in_the_background(
    kokoro_assets, engine, tmp_path, caplog
) -> None:
    """Graphs cached, but their int8 check and timing made on another CPU (a new machine, an
    image built elsewhere, an onnxruntime upgrade): the engine is ready at once, decoding
    whole, while the check runs in the background (minutes on a small ARM board); then
    windowed, with the check cached for this machine."""
    import json

    from fastkokoro_wyoming.engine.model.windowed.int8select import machine_signature

    graphs = engine.windowed.decoder.graphs.directory
    copy = tmp_path / "windowed" / graphs.name
    (copy / "int8").mkdir(parents=True)
    for f in graphs.iterdir():
        if f.is_file():
            (copy / f.name).symlink_to(f)
    for f in (graphs / "int8").glob("*.onnx"):
        (copy / "int8" / f.name).symlink_to(f)
    meta = json.loads((graphs / "int8" / "meta.json").read_text())
    (copy / "int8" / "meta.json").write_text(json.dumps({**meta, "signature": "another CPU"}))
    caplog.set_level(logging.INFO, logger="fastkokoro_wyoming")
    cfg = engine_config(*kokoro_assets)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, cache_dir=str(tmp_path)))
    fresh = await load_engine(cfg)
    try:
        assert fresh.windowed is not None and fresh.windowed.decoder is None
        assert "Checking the int8 convolutions on this CPU" in [t["task"] for t in fresh.preparing]
        assert len(await _chunks(fresh, FOX)) == 1  # served meanwhile, decoded whole
        await _until(lambda: fresh.windowed.decoder is not None, 600, "checked")
        checked = json.loads((copy / "int8" / "meta.json").read_text())
        assert checked["signature"] == machine_signature() and checked["passed"]
        assert "int8 convolutions:" in caplog.text and "Traceback" not in caplog.text
    finally:
        fresh.close()


class CallTrace:
    """Records the engine's model calls as they happen: each request job's queueing (with
    its priority) and start, each calibration decode's start and end, and, at every decode
    that ran to its end, how long each request job that was due had already waited."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[int, tuple[float, Priority]] = {}  # job -> (queued at, priority)
        self.served_beside = 0  # request jobs that started while a decode ran
        self.decodes_done = 0
        self.decodes_aborted = 0
        self.running_decodes = 0
        self.waited_behind: list[float] = []  # seconds a due job had waited at a decode's end
        self._ids = itertools.count()

    def queued(self, priority: Priority) -> int:
        with self.lock:
            job = next(self._ids)
            self.waiting[job] = (time.monotonic(), priority)
            return job

    def started(self, job: int) -> None:
        with self.lock:
            self.waiting.pop(job, None)
            self.served_beside += self.running_decodes > 0

    def decode(self, run):
        with self.lock:
            self.running_decodes += 1
        try:
            out = run()
        except Exception:
            with self.lock:
                self.decodes_aborted += 1
            raise
        finally:
            with self.lock:
                self.running_decodes -= 1
        with self.lock:
            self.decodes_done += 1
            now = time.monotonic()
            for queued_at, priority in self.waiting.values():
                due_since = max(queued_at, priority.deadline() - PREEMPT_SLACK_S)
                if due_since < now:
                    self.waited_behind.append(now - due_since)
        return out


async def test_no_request_waits_behind_a_calibration_decode(engine, monkeypatch) -> None:
    """A voice calibrates while short requests for another keep coming (one every ~0.3 s,
    the light steady load under which priors used to never finish): the priors finish, and
    no request job that was due waited at a decode's end longer than the scheduler's bound
    (PREEMPT_MAX_WAIT_S, plus ORT's abort latency): decodes yield or run beside requests.
    Checked on the calls themselves, not on first-audio wall times."""
    backend, scheduler = engine.windowed, engine.scheduler
    trace = CallTrace()
    original_stats = backend._stats
    original_submit = scheduler.submit

    def stats(decoder, ids, style, options):
        return trace.decode(lambda: original_stats(decoder, ids, style, options))

    def submit(fn, priority, abort=None, *, admit=True, background=False):
        if background:
            return original_submit(fn, priority, abort, admit=admit, background=True)
        job = trace.queued(priority)

        def traced():
            trace.started(job)
            return fn()

        return original_submit(traced, priority, abort, admit=admit, background=False)

    monkeypatch.setattr(backend, "_stats", stats)
    monkeypatch.setattr(scheduler, "submit", submit)
    backend.forget("am_puck")
    voice = engine.voice_store.resolve("am_puck")
    await _chunks(engine, "Hello there.", voice="am_puck")  # starts its calibration
    requests = 0
    for _ in range(2000):  # short requests for the default voice while it calibrates
        if backend.has_priors(voice.name):
            break
        await _chunks(engine, "Yes, of course.")
        requests += 1
        await asyncio.sleep(0.3)
    assert backend.has_priors(voice.name), f"not calibrated after {requests} requests"
    assert trace.decodes_done >= 6 and requests >= 1
    bound = PREEMPT_MAX_WAIT_S + 0.5  # ORT checks its terminate flag between nodes
    assert max(trace.waited_behind, default=0.0) <= bound, trace.waited_behind
    if scheduler.workers >= 2:  # the other worker serves requests: decodes go on beside
        assert trace.served_beside >= 1


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
