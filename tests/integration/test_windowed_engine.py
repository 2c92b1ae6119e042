"""The windowed decoder inside the engine: chunks per window, deadlines, fallbacks.

Quality of windowed audio against the whole call is in test_windowed_decoder.py; here
the engine's use of it: a segment arrives as several chunks that add up to the whole
call's audio, a new request's first window goes ahead of a long stream's later ones,
a stream closed mid-segment drops its queued windows, a voice without norm priors is
decoded whole (and calibrated in the background), and ``streaming: false`` keeps
today's one call per segment.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import DecoderConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from tests.support.engines import collect, engine_config
from tests.support.job_log import REQUEST, job_log
from tests.support.speech import transcribe, word_accuracy

pytestmark = pytest.mark.integration

FOX = "The quick brown fox jumps over the lazy dog."
SAMPLES_PER_FRAME = 600


async def _chunks(engine: object, text: str, **kw: object) -> list[np.ndarray]:
    return [c async for c in engine.synthesize(SynthesisRequest(text, **kw))]  # type: ignore[attr-defined]


async def test_a_segment_streams_in_windows_that_say_the_words(engine) -> None:
    assert engine.windowed is not None, "the int8 classic model must split"
    chunks = await _chunks(engine, FOX)
    first = engine.cfg.decoder.first_window * SAMPLES_PER_FRAME
    assert len(chunks) >= 3 and chunks[0].size == first  # the first window, then larger ones
    assert [c.size for c in chunks[1:-1]] == sorted(c.size for c in chunks[1:-1])
    audio = np.concatenate(chunks)
    heard = await asyncio.to_thread(transcribe, audio)
    assert word_accuracy(FOX, heard) >= 0.85, heard


async def test_windows_add_up_to_the_whole_call(engine) -> None:
    """Same durations (same ids, style, speed): windowed audio is sample-aligned with the
    whole call, so the lengths agree exactly."""
    prep = engine.prepare(SynthesisRequest(FOX))
    seg = next(s for s in engine.planner.plan(prep) if not isinstance(s, np.ndarray))
    whole = await asyncio.to_thread(
        engine.session.run, seg.ids, prep.voice.style_for(len(seg.ids)), 1.0
    )
    windowed = np.concatenate(await _chunks(engine, FOX))
    assert windowed.size == whole.size


async def test_cut_segments_keep_short_joins(engine) -> None:
    """A long first sentence is cut (adaptive): the cut keeps a phrase pause, not
    Kokoro's 0.75 s of edge silence, in windowed mode too."""
    text = (
        "When you get home this evening, after the long meeting with the architects and "
        "the builders, please remember to water the tomatoes in the garden."
    )
    audio = np.concatenate(await _chunks(engine, text))
    quiet = np.abs(audio) < 1e-3
    longest, run = 0, 0
    for q in quiet[SAMPLES_PER_FRAME * 20 : -SAMPLES_PER_FRAME * 20]:
        run = run + 1 if q else 0
        longest = max(longest, run)
    assert longest < 0.5 * 24_000, f"a {longest / 24_000:.2f} s hole inside the sentence"
    heard = await asyncio.to_thread(transcribe, audio)
    assert word_accuracy(text, heard) >= 0.8, heard


async def test_new_request_overtakes_a_long_streams_windows(engine) -> None:
    """Earliest deadline first: a narration ahead of real time yields to a newcomer. Once
    the newcomer has a job queued (its plan, then each window), no narration window
    starts before it; the narration's finished windows waiting for their reader do not
    count (how many there are depends on the machine and its workers)."""
    long_text = " ".join([FOX] * 12)
    REQUEST.set("narration")
    with job_log(engine.scheduler) as log:
        narration = engine.synthesize(SynthesisRequest(long_text))
        await anext(narration)  # it is streaming, windows queued ahead
        await anext(narration)

        async def short() -> None:
            REQUEST.set("short")
            await anext(engine.synthesize(SynthesisRequest("Yes.")))

        async def more_narration() -> None:
            for _ in range(4):
                await anext(narration)

        await asyncio.wait_for(asyncio.gather(short(), more_narration()), 300)
        await narration.aclose()
    assert sum(j.request == "short" and j.started is not None for j in log.jobs) >= 1, log.jobs
    assert log.overtakers("short") == [], log.jobs


async def test_closing_a_stream_drops_its_queued_windows(engine) -> None:
    agen = engine.synthesize(SynthesisRequest(" ".join([FOX] * 6)))
    await anext(agen)
    assert engine.scheduler.queued > 0
    await agen.aclose()
    await asyncio.sleep(0.2)
    assert engine.scheduler.queued == 0 and engine.active_streams == 0


async def test_a_voice_without_priors_is_decoded_whole_then_windowed(engine, tmp_path) -> None:
    """A voice without priors: its first request is one chunk per segment (the whole
    call) while its priors are built at idle priority; then it is windowed."""
    backend = engine.windowed
    voice = engine.voice_store.resolve("am_santa")
    backend.forget("am_santa")  # as on a fresh install
    chunks = await _chunks(engine, FOX, voice="am_santa")
    assert len(chunks) == 1
    for _ in range(1200):  # 15 short decodes at idle priority, after other voices queued
        if backend.priors_for(voice) is not None:
            break
        await asyncio.sleep(0.5)
    assert backend.priors_for(voice) is not None
    chunks = await _chunks(engine, FOX, voice="am_santa")
    assert len(chunks) >= 3
    heard = await asyncio.to_thread(transcribe, np.concatenate(chunks))
    assert word_accuracy(FOX, heard) >= 0.75, heard


async def test_blends_mix_the_voices_priors(engine) -> None:
    voice = engine.voice_store.resolve("af_heart(2)+af_heart(1)")
    assert engine.windowed.priors_for(voice) is not None
    audio = await collect(
        engine.synthesize(SynthesisRequest(FOX, voice="af_heart:0.5+af_heart:0.5"))
    )
    heard = await asyncio.to_thread(transcribe, audio)
    assert word_accuracy(FOX, heard) >= 0.85, heard


async def test_streaming_off_is_one_call_per_segment(kokoro_assets) -> None:
    cfg = engine_config(*kokoro_assets)
    cfg = dataclasses.replace(cfg, decoder=DecoderConfig(streaming=False), warmup=False)
    engine = await load_engine(cfg)
    try:
        assert engine.windowed is None
        chunks = await _chunks(engine, FOX)
        assert len(chunks) == 1
        heard = await asyncio.to_thread(transcribe, chunks[0])
        assert word_accuracy(FOX, heard) >= 0.85, heard
    finally:
        engine.close()
