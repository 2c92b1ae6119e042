"""The BS.1770 meter against pyloudnorm, the stream limiter, and the per-voice gain table.

No model: synthetic signals and a fake render. ~2 s.
"""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from fastkokoro_wyoming.engine.model.voices import Voice
from fastkokoro_wyoming.engine.serving.loudness import TYPICAL_LUFS, LoudnessTable
from fastkokoro_wyoming.engine.serving.meter import Leveller, integrated_loudness
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler

RATE = 24000


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with pauses and a low tone: gating and K-weighting both matter."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    envelope = (np.sin(2 * np.pi * 1.3 * t) > -0.2) * (0.3 + 0.7 * rng.random())
    return (envelope * (0.08 * rng.standard_normal(n) + 0.1 * np.sin(2 * np.pi * 140 * t))).astype(
        np.float32
    )


@pytest.mark.parametrize("rate", [24000, 48000])
def test_meter_matches_pyloudnorm(rate: int) -> None:
    rng = np.random.default_rng(1)
    signals = [
        0.3 * np.sin(2 * np.pi * 1000 * np.arange(rate * 2) / rate),
        np.concatenate([0.05 * rng.standard_normal(rate * 2), 1e-4 * rng.standard_normal(rate)]),
        speechlike(4.0, 2),
    ]
    for x in signals:
        ours = integrated_loudness(x, rate)
        ref = pyloudnorm.Meter(rate).integrated_loudness(np.asarray(x, np.float64))
        assert ours == pytest.approx(ref, abs=0.01)
    assert integrated_loudness(np.zeros(rate), rate) == -np.inf
    assert integrated_loudness(np.ones(100), rate) == -np.inf  # shorter than one block


def test_leveller_gains_and_never_passes_the_ceiling() -> None:
    x = speechlike(3.0, 3)
    quiet = Leveller(0.5, RATE)
    assert np.allclose(quiet.apply(x), 0.5 * x) and quiet.limited == 0
    loud = Leveller(8.0, RATE)
    rng = np.random.default_rng(4)
    x = np.concatenate([0.3 * rng.standard_normal(RATE), 0.01 * rng.standard_normal(RATE)])
    out = np.concatenate([loud.apply(c) for c in np.array_split(x.astype(np.float32), 9)])
    ceiling = 10 ** (-1 / 20)
    assert np.abs(out).max() <= ceiling + 1e-6 and loud.limited > 0
    # half a second after the loud part the limiter has let go: the gain is the gain
    assert np.allclose(out[-RATE // 2 :], 8.0 * x[-RATE // 2 :], rtol=1e-5)


def test_table_gains_measures_in_background_and_caches(tmp_path) -> None:
    scheduler = Scheduler(1, 16)
    levels = {"af_heart": 0.1, "af_sky": 0.05}

    def render(voice: Voice, ids: list[int], style: np.ndarray):
        level = levels[voice.blend.split(":")[0]]
        return lambda: speechlike(1.0, len(ids)) * level

    heart = Voice("af_heart", "a", np.ones((510, 256), np.float32))
    sky = Voice("af_sky", "a", np.full((510, 256), 2, np.float32))
    cache = tmp_path / "loudness.json"
    table = LoudnessTable(-18.0, render, scheduler, 510, cache)
    try:
        lufs = table.measure_now(heart, fallback=True)
        assert table.gain_for(heart) == pytest.approx(10 ** ((-18 - lufs) / 20))
        # an unmeasured voice: the default voice's gain, never a wait ...
        assert table.gain_for(sky) == pytest.approx(table.gain_for(heart))
        assert table.measured(sky) is None  # ... no loop here: measured when there is one
        again = LoudnessTable(-18.0, render, scheduler, 510, cache)
        assert again.gain_for(heart) == pytest.approx(table.gain_for(heart))  # from disk
        off = LoudnessTable(None, render, scheduler, 510, cache)
        assert off.gain_for(sky) == 1.0 and not off.enabled
    finally:
        scheduler.close()


async def test_table_measures_an_unknown_voice_on_the_loop(tmp_path) -> None:
    import asyncio

    scheduler = Scheduler(1, 16)

    def render(voice: Voice, ids: list[int], style: np.ndarray):
        return lambda: speechlike(1.0, len(ids)) * 0.05

    sky = Voice("af_sky", "a", np.full((510, 256), 2, np.float32))
    table = LoudnessTable(-18.0, render, scheduler, 510, tmp_path / "l.json")
    try:
        # nothing known yet: a typical voice's gain, not none at all
        assert table.gain_for(sky) == pytest.approx(10 ** ((-18 - TYPICAL_LUFS) / 20))
        for _ in range(400):
            if table.measured(sky) is not None:
                break
            await asyncio.sleep(0.01)
        lufs = table.measured(sky)
        assert lufs is not None and table.gain_for(sky) == pytest.approx(10 ** ((-18 - lufs) / 20))
    finally:
        scheduler.close()


async def test_startup_voices_are_measured_in_the_background_once_settled(tmp_path) -> None:
    """measure_soon never waits: the default voice (settled) is measured right after start
    and its gain becomes every unmeasured voice's; a preset whose priors are not ready yet
    is measured once it is settled; both then come from the cache."""
    import asyncio

    scheduler = Scheduler(1, 16)
    levels = {"af_heart": 0.1, "am_adam": 0.3, "af_sky": 0.05}
    ready = {"af_heart"}

    def render(voice: Voice, ids: list[int], style: np.ndarray):
        return lambda: speechlike(1.0, len(ids)) * levels[voice.blend.split(":")[0]]

    heart = Voice("af_heart", "a", np.ones((510, 256), np.float32))
    adam = Voice("am_adam", "a", np.full((510, 256), 3, np.float32))
    sky = Voice("af_sky", "a", np.full((510, 256), 2, np.float32))
    cache = tmp_path / "l.json"

    def table() -> LoudnessTable:
        return LoudnessTable(
            -18.0, render, scheduler, 510, cache, settled=lambda v: v.blend.split(":")[0] in ready
        )

    first = table()
    try:
        first.measure_soon([heart, adam], heart, asyncio.get_running_loop())
        assert first.measured(heart) is None  # returned at once
        for _ in range(400):
            if first.measured(heart) is not None:
                break
            await asyncio.sleep(0.01)
        heart_lufs = first.measured(heart)
        assert heart_lufs is not None and first.measured(adam) is None  # adam: not settled
        assert first.gain_for(sky) == pytest.approx(10 ** ((-18 - heart_lufs) / 20))
        ready.add("am_adam")
        for _ in range(400):
            if first.measured(adam) is not None:
                break
            await asyncio.sleep(0.02)
        assert first.measured(adam) is not None and first.measured(adam) > heart_lufs + 5
        again = table()  # the next start: both from the cache, nothing to measure
        again.measure_soon([heart, adam], heart, None)
        assert again.measured(heart) == pytest.approx(heart_lufs) and not again._wanted
        assert again.gain_for(sky) == pytest.approx(first.gain_for(sky))
    finally:
        scheduler.close()
