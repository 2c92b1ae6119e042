"""WindowedDecoder.span: where a window runs at a compiled length and where at its own.

The OpenVINO trunk is compiled per window length; a window short of one (a segment's first
and last) is widened to it only where the trunk's speed-up there pays for the extra frames,
else it runs at its exact length on ONNX Runtime (0.8-0.9x ONNX Runtime's audio on medium
texts when every window was widened)."""

from __future__ import annotations

from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder


def _decoder(fixed: bool, speedups: dict[int, float] | None = None) -> WindowedDecoder:
    """A decoder's schedule without its sessions (span needs none)."""
    dec = object.__new__(WindowedDecoder)
    dec.context, dec.first, dec.growth, dec.max_frames = 4, 10, 2.0, 80
    dec.fixed_shapes, dec.speedups = fixed, dict(speedups or {})
    return dec


def test_the_schedule_compiles_four_lengths() -> None:
    assert _decoder(True).window_lengths == [18, 28, 48, 88]


def test_exact_spans_on_onnxruntime() -> None:
    dec = _decoder(False)
    assert dec.span(200, 0, 10) == (0, 14, 0)  # no left context at the start
    assert dec.span(200, 100, 180) == (96, 184, 0)
    assert dec.span(200, 180, 200) == (176, 200, 0)


def test_without_speedups_every_window_is_widened() -> None:
    dec = _decoder(True)
    assert dec.span(200, 0, 10) == (0, 18, 0)
    assert dec.span(200, 180, 200) == (172, 200, 0)  # 24 frames widened to 28
    assert dec.span(12, 0, 10) == (0, 12, 6)  # a segment shorter than the length: padded


def test_a_window_is_widened_only_where_the_speedup_pays() -> None:
    dec = _decoder(True, {18: 1.0, 28: 1.13, 48: 1.23, 88: 1.3})
    assert dec.span(200, 100, 180) == (96, 184, 0)  # exactly 88: compiled
    assert dec.span(200, 0, 10) == (0, 14, 0)  # 14 of 18 at 1.0x: exact, on ORT
    assert dec.span(200, 180, 200) == (176, 200, 0)  # 24 of 28 at 1.13x: exact
    assert dec.span(200, 125, 200) == (112, 200, 0)  # 79 of 88 at 1.3x: widened
    assert _decoder(True, {18: 1.4}).span(200, 0, 10) == (0, 18, 0)  # 14 x 1.4 >= 18
