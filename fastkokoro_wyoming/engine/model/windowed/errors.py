"""The windowed decoder's own error (kept import-light: no onnx needed to catch it)."""

from __future__ import annotations


class GraphNotSupported(ValueError):
    """The model cannot be cut for windowed decoding (structure unknown, or onnx missing).

    The engine should fall back to whole-segment decoding; ``reason`` says why.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"windowed decoder: graph not supported: {reason}")
        self.reason = reason
