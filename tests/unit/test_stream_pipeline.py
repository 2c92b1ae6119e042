"""The default decoding path without a model: SpeechStream + WindowedRender + EdgeTrim.

A fake decoder plans ``FRAMES_PER_ID`` frames per id and decodes window ``[lo, hi)`` as
audio whose every sample holds its frame number (+1, so nothing is silent): whatever the
pipeline does with windows, deadlines and joins, the frames that come out say which
window they came from, in which order, and whether one was lost or sent twice.
Runs on the real scheduler (threads), in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pytest

from fastkokoro_wyoming.engine.model.voices import Voice
from fastkokoro_wyoming.engine.model.windowed.decoder import window_bounds
from fastkokoro_wyoming.engine.serving.plan import JOIN_LEAD, JOIN_TAIL, Prepared, Segment
from fastkokoro_wyoming.engine.serving.renders import (
    Due,
    EdgeTrim,
    WindowedRender,
    submit_call,
)
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from fastkokoro_wyoming.engine.serving.stream import SpeechStream
from fastkokoro_wyoming.engine.serving.trace import RequestTrace
from fastkokoro_wyoming.engine.settings import EngineConfig, SegmentationConfig

SPF = 600  # samples per frame, as the classic model
FRAMES_PER_ID = 3


@dataclass(frozen=True)
class FakePlan:
    frames: int
    durations: np.ndarray

    @property
    def samples(self) -> int:
        return SPF * self.frames


@dataclass
class FakeDecoder:
    """Windows of 2, 4, 8, 8, ... frames; each sample is its frame number + 1."""

    calls: list[tuple[int, int]] = field(default_factory=list)
    calls_by_plan: dict[int, list[tuple[int, int]]] = field(default_factory=dict)
    gate: asyncio.Event | None = None

    def run_options(self) -> SimpleNamespace:
        return SimpleNamespace(terminate=False)

    def window_bounds(self, frames: int) -> list[tuple[int, int]]:
        return window_bounds(frames, first=2, growth=2.0, max_frames=8)

    def plan(self, ids: list[int]) -> FakePlan:
        frames = FRAMES_PER_ID * len(ids)
        durations = np.full(len(ids) + 2, FRAMES_PER_ID, np.int64)
        durations[0] = durations[-1] = 0  # no edge silence: every frame is speech
        return FakePlan(frames, durations)

    def decode_window(self, plan: FakePlan, lo: int, hi: int, options: object) -> np.ndarray:
        self.calls.append((lo, hi))
        self.calls_by_plan.setdefault(plan.frames, []).append((lo, hi))
        return np.repeat(np.arange(lo, hi, dtype=np.float32) + 1, SPF)


def frames_of(audio: np.ndarray) -> list[int]:
    """The frame numbers in ``audio``, one per frame, silence (the gaps) left out."""
    speech = audio[audio > 0]
    assert speech.size % SPF == 0
    return [int(v) - 1 for v in speech[::SPF]]


def stream_over(
    segments: list[Segment], decoder: FakeDecoder, scheduler: Scheduler, lookahead: int = 2
) -> SpeechStream:
    prep = Prepared(("x",), Voice("af_test", "a", np.zeros((510, 256), np.float32)), "a", 1.0, True)
    trace = RequestTrace(None)

    def start_render(seg: Segment, prep: Prepared, due: Due, trace: RequestTrace, admit: bool):
        def submit_plan():
            plan = decoder.plan(seg.ids)
            return submit_call(
                scheduler, lambda _: plan, decoder.run_options(), 1, due(0.0), trace, admit=admit
            )

        return WindowedRender(seg, decoder, scheduler, submit_plan, 1.0, lookahead, trace)  # type: ignore[arg-type]

    cfg = EngineConfig(segmentation=SegmentationConfig(boundary_silence_ms=10))
    return SpeechStream(prep, (s for s in segments), start_render, cfg, 0, trace)


@pytest.fixture
def scheduler():
    sched = Scheduler(1, 64)
    yield sched
    sched.close()


async def test_every_frame_comes_out_once_in_order_across_windows_and_segments(scheduler):
    decoder = FakeDecoder()
    segs = [Segment(list(range(7)), "a"), Segment(list(range(5)), "b")]
    chunks = [c async for c in stream_over(segs, decoder, scheduler).chunks()]
    first, second = 7 * FRAMES_PER_ID, 5 * FRAMES_PER_ID
    heard = frames_of(np.concatenate(chunks))
    assert heard == list(range(first)) + list(range(second))
    # windows grow (2, 4, 8 frames ...) and each segment's cover its frames exactly once;
    # the next segment's windows may run between them (lookahead), so order is per segment
    assert decoder.calls_by_plan[first] == window_bounds(first, 2, 2.0, 8)
    assert decoder.calls_by_plan[first][:3] == [(0, 2), (2, 6), (6, 14)]
    assert decoder.calls_by_plan[second] == window_bounds(second, 2, 2.0, 8)
    assert sorted(decoder.calls) == sorted(
        window_bounds(first, 2, 2.0, 8) + window_bounds(second, 2, 2.0, 8)
    )
    # one chunk per window (the last of each segment carries the boundary gap)
    assert len(chunks) == len(decoder.calls)


async def test_first_chunk_is_the_first_small_window(scheduler):
    decoder = FakeDecoder()
    stream = stream_over([Segment(list(range(20)), "a")], decoder, scheduler)
    async with contextlib.aclosing(stream.chunks()) as chunks:
        first = await anext(chunks)
    assert frames_of(first) == [0, 1]


async def test_closing_the_stream_drops_its_queued_windows(scheduler):
    decoder = FakeDecoder()
    stream = stream_over([Segment(list(range(60)), "a")], decoder, scheduler, lookahead=4)
    async with contextlib.aclosing(stream.chunks()) as chunks:
        await anext(chunks)
    for _ in range(100):  # the running window (if any) finishes; nothing else runs
        if scheduler.queued == 0:
            break
        await asyncio.sleep(0.01)
    assert scheduler.queued == 0
    assert len(decoder.calls) <= 1 + 4  # the first window and at most the lookahead


def tone(n: int) -> np.ndarray:
    return np.full(n, 0.5, np.float32)


def silence(n: int) -> np.ndarray:
    return np.zeros(n, np.float32)


def test_edge_trim_passes_a_segment_without_joins_untouched():
    trim = EdgeTrim(lead=False, tail=False)
    audio = np.concatenate([silence(5000), tone(100)])
    assert np.array_equal(trim.feed(audio, last=True), audio)


def test_edge_trim_drops_leading_silence_up_to_the_lead_across_windows():
    trim = EdgeTrim(lead=True, tail=False)
    out = [trim.feed(silence(3000), last=False), trim.feed(silence(2000), last=False)]
    out.append(trim.feed(np.concatenate([silence(500), tone(1000)]), last=True))
    audio = np.concatenate(out)
    assert audio.size == JOIN_LEAD + 1000  # JOIN_LEAD of silence before the speech
    assert trim.dropped == 5500 - JOIN_LEAD
    assert np.all(audio[-1000:] == 0.5)


def test_edge_trim_holds_silence_after_speech_until_more_speech_or_the_end():
    trim = EdgeTrim(lead=False, tail=True)
    a = trim.feed(np.concatenate([tone(800), silence(4000)]), last=False)
    assert a.size == 800  # the silence is held: it may be the segment's tail
    b = trim.feed(np.concatenate([silence(1000), tone(200)]), last=False)
    assert b.size == 4000 + 1000 + 200  # speech came: the held silence was a pause
    c = trim.feed(silence(9000), last=True)
    assert c.size == JOIN_TAIL  # the segment's end keeps a phrase pause, not 9000
