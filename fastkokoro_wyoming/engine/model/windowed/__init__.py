"""Windowed decoding of one Kokoro segment: first audio after a short window, not the whole call.

:mod:`.graphs` cuts the classic model into front / fr / phase / generator / stats graphs
(cached per model sha256), :mod:`.norm_stats` builds the generator's instance-norm priors
per voice and style row, and :mod:`.decoder` plans a segment once and decodes it window by
window. Importing this package needs numpy and onnxruntime; only deriving needs onnx.
"""

from .decoder import SegmentPlan, WindowedDecoder, window_bounds
from .errors import GraphNotSupported
from .graphs import WindowedGraphs, derive
from .norm_stats import NormPriors, load_or_calibrate

__all__ = [
    "GraphNotSupported",
    "NormPriors",
    "SegmentPlan",
    "WindowedDecoder",
    "WindowedGraphs",
    "derive",
    "load_or_calibrate",
    "window_bounds",
]
