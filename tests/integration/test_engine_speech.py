"""The real int8 Kokoro model through the engine and the `say` CLI, checked by pocketsphinx."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.errors import (
    EmptyText,
    EngineError,
    InvalidSpeed,
    TextTooLong,
    UnknownVoice,
)
from tests.support.engines import collect
from tests.support.job_log import REQUEST, job_log
from tests.support.speech import transcribe, word_accuracy

THREE = (
    "The weather today is sunny and warm. Please remember to water the garden. "
    "We will meet again tomorrow morning."
)
# pocketsphinx's small en-us model misses a word or two of Kokoro's speech; measured 0.95+
MIN_ACCURACY = 0.8


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (24000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32767


@pytest.mark.parametrize("voice", ["af_heart", "af_bella(2)+af_sky(1)"])
def test_say_cli_speaks_the_words(kokoro_assets, tmp_path, voice):
    model, voices = kokoro_assets
    out = tmp_path / "out.wav"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastkokoro_wyoming",
            "say",
            THREE,
            "--voice",
            voice,
            "--model",
            str(model),
            "--voices",
            str(voices),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FASTKOKORO_LOG_LEVEL": "WARNING"},
    )
    assert proc.returncode == 0, proc.stderr
    audio = read_wav(out)
    assert 5.0 < audio.size / 24000 < 15.0
    heard = transcribe(audio)
    acc = word_accuracy(THREE, heard)
    print(f"{voice}: accuracy {acc:.2f}: {heard!r}")
    assert acc >= MIN_ACCURACY, heard


def test_say_reads_stdin(kokoro_assets, tmp_path):
    model, voices = kokoro_assets
    out = tmp_path / "p.wav"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "fastkokoro_wyoming",
            "say",
            "--model",
            str(model),
            "--voices",
            str(voices),
            "-o",
            str(out),
        ],
        input="[pause:0.5s]",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "FASTKOKORO_LOG_LEVEL": "WARNING"},
    )
    assert proc.returncode == 0, proc.stderr
    assert read_wav(out).size == 12_000


async def test_pause_token_is_exact_silence_in_place(engine):
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Hello. [pause:0.5s] Goodbye."))]
    # each sentence may come in several decoder windows; the pause is one chunk between them
    pauses = [i for i, c in enumerate(chunks) if c.size == 12_000 and not c.any()]
    assert len(pauses) == 1 and 0 < pauses[0] < len(chunks) - 1
    before, after = np.concatenate(chunks[: pauses[0]]), np.concatenate(chunks[pauses[0] + 1 :])
    assert np.abs(before).max() > 0.05 and np.abs(after).max() > 0.05


async def test_loose_pause_forms_are_read_as_text(engine):
    chunks = [c async for c in engine.synthesize(SynthesisRequest("Wait [pause=1] here."))]
    assert not any(c.size == 24_000 and not c.any() for c in chunks)  # no 1 s pause chunk
    assert np.abs(np.concatenate(chunks)).max() > 0.05


async def test_text_normalisation_is_spoken_as_words(engine):
    text = "It costs $5.50 at 10:30am. See **https://www.example.com** now!"
    heard = transcribe(await collect(engine.synthesize(SynthesisRequest(text))))
    for word in ("five", "dollars", "fifty", "ten", "thirty", "example", "dot", "com"):
        assert word in heard.split(), heard
    assert "asterisk" not in heard and "slash" not in heard


async def test_long_text_streams_lazily_with_flat_memory(engine):
    words = (
        "The committee reviewed every proposal carefully before the final vote was taken "
        "late in the evening."
    ).split()
    long_text = " ".join(words * (5000 // len(words) + 1))  # about 5,000 words
    short_text = " ".join(words * 3)

    async def first_chunks(text: str, n: int = 3) -> tuple[float, int]:
        t0 = time.perf_counter()
        agen = engine.synthesize(SynthesisRequest(text))
        first = None
        try:
            for _ in range(n):
                await asyncio.wait_for(agen.__anext__(), 120)
                first = first or time.perf_counter() - t0
        finally:
            await agen.aclose()
        return first, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    _, rss_short = await first_chunks(short_text)
    first_long, rss_long = await first_chunks(long_text)
    # ~5,000 words is ~30 minutes of audio: the first chunk comes after one sentence's work
    assert first_long < 30, first_long
    # peak RSS does not grow with the text: nothing is phonemised or rendered ahead
    assert rss_long - rss_short < 60 * 1024, (rss_short, rss_long)  # KiB
    await asyncio.sleep(0.05)  # cancellation reaches the worker queue on the next loop turn
    assert engine.active_streams == 0 and engine.scheduler.queued == 0


@pytest.mark.parametrize(
    "req,error",
    [
        (SynthesisRequest("Hello", voice="zz_nobody"), UnknownVoice),
        (SynthesisRequest(""), EmptyText),
        (SynthesisRequest("   \n"), EmptyText),
        (SynthesisRequest("Hello", speed=100), InvalidSpeed),
        (SynthesisRequest("Hello", speed=0.1), InvalidSpeed),
        (SynthesisRequest("a" * 1_000_000), TextTooLong),
        (SynthesisRequest("🎉🎂🚀 \x00\x01\x02"), EmptyText),
    ],
)
async def test_bad_inputs_have_codes_and_engine_keeps_working(engine, req, error):
    with pytest.raises(error) as err:
        await collect(engine.synthesize(req))
    assert isinstance(err.value, EngineError) and err.value.code and err.value.param
    ok = await collect(engine.synthesize(SynthesisRequest("Still here.")))
    assert ok.size > 12_000


async def test_emoji_and_control_bytes_inside_text_are_dropped(engine):
    audio = await collect(engine.synthesize(SynthesisRequest("Good\x00 morning 🎉 everyone\x07.")))
    heard = transcribe(audio)
    assert "morning" in heard, heard


async def test_closing_a_stream_aborts_its_running_model_call(engine):
    """A long segment already inside ONNX Runtime is stopped (RunOptions.terminate), so the
    worker is free long before that call could have finished (a 400-id call takes 10+ s)."""
    long_sentence = " ".join(["the quick brown fox jumps over the lazy dog"] * 12) + "."
    agen = engine.synthesize(SynthesisRequest("Hi. " + long_sentence))
    await asyncio.wait_for(agen.__anext__(), 120)  # "Hi." is out; the long one is running
    for _ in range(50):
        if engine.scheduler.busy_workers:
            break
        await asyncio.sleep(0.02)
    await agen.aclose()
    for _ in range(100):  # up to 5 s
        if engine.scheduler.busy_workers == 0:
            break
        await asyncio.sleep(0.05)
    assert engine.scheduler.busy_workers == 0 and engine.scheduler.queued == 0
    ok = await collect(engine.synthesize(SynthesisRequest("Next.")))
    assert ok.size > 0


async def test_short_request_overtakes_a_long_narration(engine):
    """A short request sent while a ~2,000-word request streams is never kept waiting by
    the long one's queued windows: once any job of the short one is queued, no job of the
    long one starts before it (the scheduler puts every request's first audio ahead of
    later audio). What the reader sees is not counted: finished windows wait for it, and
    how many are finished ahead depends on the machine and its workers."""
    sentence = "The old lighthouse keeper climbed the stairs again to watch the ships at night."
    long_text = " ".join([sentence] * 140)  # ~2,000 words
    long_started = asyncio.Event()
    chunks = {"long": 0, "short": 0}

    async def narrate() -> None:
        REQUEST.set("long")
        agen = engine.synthesize(SynthesisRequest(long_text))
        try:
            async for _ in agen:
                chunks["long"] += 1
                long_started.set()
                if chunks["long"] >= 6:
                    return
        finally:
            await agen.aclose()

    async def announce() -> None:
        await long_started.wait()
        REQUEST.set("short")
        async for _ in engine.synthesize(SynthesisRequest("Door open.")):
            chunks["short"] += 1
            return

    with job_log(engine.scheduler) as log:
        await asyncio.wait_for(asyncio.gather(narrate(), announce()), 300)
    assert chunks["short"] == 1
    assert any(j.request == "short" and j.started is not None for j in log.jobs), log.jobs
    assert log.overtakers("short") == [], log.jobs
