"""The Kokoro engine: text -> phonemes -> segments -> ONNX -> PCM, shared by both front ends."""

from .engine import Engine, Prepared
from .errors import EngineError
from .types import SAMPLE_RATE, SynthesisRequest, VoiceInfo

__all__ = ["Engine", "EngineError", "Prepared", "SAMPLE_RATE", "SynthesisRequest", "VoiceInfo"]
