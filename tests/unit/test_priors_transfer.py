"""A quick calibration keeps the reference voice's row curve between its few anchors."""

from __future__ import annotations

import numpy as np
import pytest

from fastkokoro_wyoming.engine.model.windowed.norm_stats import NormPriors, transfer_priors

CHANNELS = (3, 2)
ROWS = np.asarray([8, 48, 128, 256, 509])


def reference() -> NormPriors:
    rng = np.random.default_rng(0)
    mean = rng.standard_normal((len(ROWS), sum(CHANNELS))).astype(np.float32)
    var = rng.uniform(0.5, 2.0, (len(ROWS), sum(CHANNELS))).astype(np.float32)
    return NormPriors("af_heart", ROWS, mean, var, CHANNELS)


def test_a_voice_offset_from_the_reference_is_reproduced_from_one_anchor() -> None:
    ref = reference()
    shift, scale = 0.3, 1.5  # the new voice: the reference's curve, shifted and scaled
    truth = NormPriors("am_adam", ROWS, ref.mean + shift, ref.var * scale, CHANNELS)
    at = [int(np.searchsorted(ROWS, 48))]
    measured = NormPriors("am_adam", ROWS[at], truth.mean[at], truth.var[at], CHANNELS)
    quick = transfer_priors(ref, measured)
    assert quick.voice == "am_adam" and np.array_equal(quick.rows, ROWS)
    np.testing.assert_allclose(quick.mean, truth.mean, atol=1e-5)
    np.testing.assert_allclose(quick.var, truth.var, rtol=1e-4)


def test_offsets_are_interpolated_between_two_anchors() -> None:
    ref = reference()
    measured = NormPriors(
        "bf_emma",
        np.asarray([48, 256]),
        np.stack([ref.mean[1] + 1.0, ref.mean[3] + 3.0]),
        np.stack([ref.var[1], ref.var[3]]),
        CHANNELS,
    )
    quick = transfer_priors(ref, measured)
    offset = quick.mean - ref.mean
    # constant outside the anchors, linear in the row between them
    np.testing.assert_allclose(offset[[0, 1]], 1.0, atol=1e-5)
    np.testing.assert_allclose(offset[[3, 4]], 3.0, atol=1e-5)
    np.testing.assert_allclose(offset[2], 1.0 + 2.0 * (128 - 48) / (256 - 48), atol=1e-5)
    np.testing.assert_allclose(quick.var, ref.var, rtol=1e-4)


def test_priors_of_another_model_are_refused() -> None:
    ref = reference()
    other = NormPriors("x", ROWS[:1], ref.mean[:1, :4], ref.var[:1, :4], (4,))
    with pytest.raises(ValueError, match="same model"):
        transfer_priors(ref, other)


def test_voices_calibrated_at_different_anchors_still_blend() -> None:
    """The default voice has 5 anchors, a quickly calibrated one 3: the blend is taken on
    the union of their rows, where each curve is reproduced exactly."""
    ref = reference()
    quick_rows = np.asarray([24, 80, 256])
    quick = NormPriors("am_adam", quick_rows, ref.mean[:3] + 1.0, ref.var[:3], CHANNELS)
    mixed = NormPriors.blend([(ref, 1.0), (quick, 1.0)], "af_heart+am_adam")
    assert list(mixed.rows) == [8, 24, 48, 80, 128, 256, 509]
    for row in (8, 48, 100, 300):
        want = 0.5 * ref.row_stats(row)["norm00_mean"] + 0.5 * quick.row_stats(row)["norm00_mean"]
        np.testing.assert_allclose(mixed.row_stats(row)["norm00_mean"], want, atol=1e-5)
