"""ONNX Runtime: providers, session options, and the two Kokoro model contracts.

The contract is read from the graph's own input/output names:

* **classic** (hexgrad/onnx-community/kokoro-onnx exports): ``tokens`` or
  ``input_ids`` ``[1, N]``, ``style [1, 256]``, ``speed [1]`` -> ``audio``; N <= 512.
* **bucket** (msgflux's fixed-bucket streaming export): ``input_ids [1, B]``,
  ``style``, ``speed``, ``input_lengths [1]`` -> ``waveform`` (fixed length) and
  ``duration [B]``. Ids are padded to B and the waveform is trimmed to what the
  durations predict: 480 samples per alignment frame plus a 3,120-sample tail.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError
from ..settings import GraphOptimization, IoBinding, choices
from .contract import (
    CLASSIC_SAMPLES_PER_FRAME,
    SAMPLES_PER_FRAME,
    TAIL_SAMPLES,
    Contract,
    read_contract,
)
from .cuda_graphs import GraphBuffers

if TYPE_CHECKING:
    import onnxruntime as ort

_LOGGER = logging.getLogger(__name__)


PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}
_GPU_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
MAX_AUTO_WORKERS = 4  # beyond, more streams at once cost memory more than they gain (unmeasured)
_AUTO_ORDER = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
# engine.runtime.graph_optimization -> ORT's enum, in the order settings lists them.
_OPT_LEVELS = dict(
    zip(
        choices(GraphOptimization),
        ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"),
        strict=True,
    )
)


def import_onnxruntime() -> Any:
    """Import onnxruntime, or fail with the extra to install."""
    try:
        import onnxruntime
    except ImportError as err:
        raise ConfigError(
            "onnxruntime is not installed: install 'fastkokoro-wyoming[cpu]' "
            "(or 'fastkokoro-wyoming[gpu]' on an NVIDIA host)"
        ) from err
    return onnxruntime


@dataclass(frozen=True)
class RuntimeSettings:
    """What opening a session needs: ``engine.runtime`` plus the cache and profile folders."""

    providers: tuple[str, ...] = ("cpu",)
    provider_options: dict[str, dict[str, Any]] | None = None
    intra_op_threads: int = 0  # 0: auto (resolve_runtime: see cpu_split)
    inter_op_threads: int = 1
    workers: int = 0  # model calls at once (the scheduler's); 0: auto (see cpu_split)
    graph_optimization: str = "all"
    cache_dir: Path | None = None  # TensorRT engine / timing cache
    profile_dir: Path | None = None  # ONNX Runtime profiling of every call, written on close
    io_binding: str = "auto"  # auto (on for CUDA/TensorRT) | on | off
    cuda_graph: bool = False  # capture fixed-bucket calls as CUDA graphs (bucket + CUDA EP)
    resolved: bool = False  # providers are full names known to be available

    def session_providers(self) -> list[tuple[str, dict[str, Any]]]:
        """``providers=`` for ``ort.InferenceSession``: each with its options."""
        return [(p, provider_options(p, self)) for p in self.providers]


def resolve_runtime(settings: RuntimeSettings) -> RuntimeSettings:
    """The one place providers, workers and threads are resolved (fallbacks warned once):
    every session the engine opens, the model's and the windowed decoder's, uses the result."""
    providers = tuple(available_providers(settings))
    workers, threads = cpu_split(
        settings.workers, settings.intra_op_threads, providers[0] in _GPU_PROVIDERS
    )
    return replace(
        settings, providers=providers, workers=workers, intra_op_threads=threads, resolved=True
    )


def cpu_split(workers: int, threads: int, gpu: bool, cpus: int | None = None) -> tuple[int, int]:
    """(model calls at once, intra-op threads per call) for ``engine.runtime.workers`` and
    ``intra_op_threads``, 0 meaning auto.

    On a GPU the CPU only launches kernels: 2 workers x 1 thread. On a CPU, measured on 2
    cores with the int8-weight convolutions (bench/results/capacity.md): 2 workers x 1
    thread makes the most audio per wall second with 4 or 8 clients, since the snake's
    ``Sin`` and the STFT stay single-threaded inside one call, and two calls at once keep
    both cores busy; with one client its windows overlap too. So auto is one worker per
    core, one thread each, up to :data:`MAX_AUTO_WORKERS` workers (then threads share the
    rest). Only one of the two given: the other divides the cores by it.
    """
    if gpu:
        return workers or 2, threads or 1
    cpus = max(1, cpus or os.cpu_count() or 1)
    if workers and threads:
        return workers, threads
    if workers:
        return workers, max(1, cpus // workers)
    if threads:
        return max(1, cpus // threads), threads
    auto = min(cpus, MAX_AUTO_WORKERS)
    return auto, max(1, cpus // auto)


def session_options(settings: RuntimeSettings) -> Any:
    """ORT session options for ``settings`` (providers resolved): threads, memory
    patterns, optimisation level, profiling."""
    ort = import_onnxruntime()
    gpu = settings.providers[0] in _GPU_PROVIDERS
    opts = ort.SessionOptions()
    # On a GPU the CPU only launches kernels: one thread beats a spinning pool there.
    opts.intra_op_num_threads = settings.intra_op_threads or (1 if gpu else 0)  # 0: ORT's
    # Memory patterns are planned per input shape; with variable-length text on a CPU
    # they only raise the peak (a 200-word request: 593 MB with them, 415 MB without).
    opts.enable_mem_pattern = gpu
    opts.inter_op_num_threads = settings.inter_op_threads
    level = _OPT_LEVELS.get(settings.graph_optimization.lower())
    if level is None:
        raise ConfigError(
            f"engine.runtime.graph_optimization: {settings.graph_optimization!r} is not one of "
            f"{', '.join(_OPT_LEVELS)}"
        )
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if settings.profile_dir is not None:
        Path(settings.profile_dir).mkdir(parents=True, exist_ok=True)
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(settings.profile_dir) / "onnxruntime")
    return opts


IO_BINDING_MODES = choices(IoBinding)


def available_providers(settings: RuntimeSettings) -> list[str]:
    """The providers a session with ``settings`` would get, in order (loads CUDA DLLs)."""
    ort = import_onnxruntime()
    if hasattr(ort, "preload_dlls") and any(
        PROVIDER_ALIASES.get(p.lower(), p) in _GPU_PROVIDERS or p.lower() == "auto"
        for p in settings.providers
    ):
        try:  # CUDA/cuDNN from the nvidia-* wheels, if that is how they were installed
            ort.preload_dlls()
        except Exception:  # noqa: BLE001 - best effort; the provider check below reports
            _LOGGER.debug("onnxruntime.preload_dlls failed", exc_info=True)
    return resolve_providers(settings.providers, ort.get_available_providers())


def is_gpu(provider: str) -> bool:
    return provider in _GPU_PROVIDERS


def resolve_providers(requested: tuple[str, ...], available: list[str]) -> list[str]:
    """Ordered provider list -> the ones to use. Missing ones fall back if the list allows."""
    names: list[str] = []
    for p in requested:
        if p.lower() == "auto":
            names.extend(x for x in _AUTO_ORDER if x in available and x not in names)
            continue
        full = PROVIDER_ALIASES.get(p.lower(), p)
        if full not in names:
            names.append(full)
    usable = [p for p in names if p in available]
    missing = [p for p in names if p not in available]
    if not usable:
        hint = (
            " install 'fastkokoro-wyoming[gpu]' (onnxruntime-gpu) and CUDA 12/13 + cuDNN 9"
            if any(m in _GPU_PROVIDERS for m in missing)
            else ""
        )
        raise ConfigError(
            f"engine.runtime.providers: {', '.join(missing)} not available in the installed "
            f"onnxruntime (available: {', '.join(available)});{hint}"
        )
    for m in missing:
        _LOGGER.warning("Provider %s is not available; falling back to %s", m, usable[0])
    return usable


def provider_options(name: str, settings: RuntimeSettings) -> dict[str, Any]:
    opts = dict((settings.provider_options or {}).get(name, {}))
    short = next((k for k, v in PROVIDER_ALIASES.items() if v == name), name)
    opts.update((settings.provider_options or {}).get(short, {}))
    if name == "CUDAExecutionProvider":
        # Variable-length input means new conv shapes on almost every request, and cuDNN's
        # exhaustive search then costs ~1 s per request. Measured on an H100, first chunk
        # of unseen texts: EXHAUSTIVE 1.0-1.2 s, HEURISTIC 0.31-0.61 s, DEFAULT 0.22-0.51 s.
        # Fixed buckets are searched once, at warmup, so CUDA graphs keep the exhaustive one.
        opts.setdefault(
            "cudnn_conv_algo_search", "EXHAUSTIVE" if settings.cuda_graph else "DEFAULT"
        )
    if name == "CUDAExecutionProvider" and settings.cuda_graph:
        opts.setdefault("enable_cuda_graph", "1")
    if name == "TensorrtExecutionProvider" and settings.cuda_graph:
        opts.setdefault("trt_cuda_graph_enable", True)
    if name == "TensorrtExecutionProvider" and settings.cache_dir is not None:
        cache = str(Path(settings.cache_dir) / "tensorrt")
        os.makedirs(cache, exist_ok=True)
        opts.setdefault("trt_engine_cache_enable", True)
        opts.setdefault("trt_engine_cache_path", cache)
        opts.setdefault("trt_timing_cache_enable", True)
        opts.setdefault("trt_timing_cache_path", cache)
    return opts


class KokoroSession:
    """One ONNX Runtime session and its contract. ``run`` is safe from many threads.

    On a GPU the call goes through IO binding: inputs are copied to the device once and
    the audio is read back from device memory, without ORT's per-call staging. With
    ``cuda_graph`` (fixed-bucket models only) the first calls capture a CUDA graph over
    device buffers bound once; later calls update those buffers in place and replay it,
    one call at a time.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        contract: Contract,
        io_binding: bool = False,
        path: Path | None = None,
    ) -> None:
        self.session = session
        self.path = path  # the model file loaded (a prepared copy, maybe)
        self.contract = contract
        self.provider = session.get_providers()[0]
        self.device = "cuda" if is_gpu(self.provider) else "cpu"
        self.io_binding = io_binding
        self._graph: GraphBuffers | None = None
        self._settings: RuntimeSettings | None = None
        self._reopen = threading.Lock()
        # lazy: closed while windowed decoding serves (its weights are the split graphs');
        # reopened by the first whole-segment call that needs it
        self.lazy = False

    @classmethod
    def open(cls, model: Path, settings: RuntimeSettings) -> KokoroSession:
        ort = import_onnxruntime()
        if not Path(model).is_file():
            raise ConfigError(f"engine.model.path: {model} does not exist")
        if settings.io_binding not in IO_BINDING_MODES:
            raise ConfigError(
                f"engine.runtime.io_binding: {settings.io_binding!r} is not one of "
                f"{', '.join(IO_BINDING_MODES)}"
            )
        # Resolved once by the loader (``resolve_runtime``); direct callers get it here.
        settings = settings if settings.resolved else resolve_runtime(settings)
        providers = list(settings.providers)
        graph = settings.cuda_graph and providers[0] in _GPU_PROVIDERS
        if settings.cuda_graph and not graph:
            _LOGGER.warning(
                "engine.runtime.cuda_graph needs CUDA or TensorRT; ignored on %s", providers[0]
            )
        settings = replace(settings, cuda_graph=graph)
        opts = session_options(settings)
        try:
            session = ort.InferenceSession(
                str(model),
                sess_options=opts,
                providers=settings.session_providers(),
            )
        except Exception as err:  # ORT raises its own Fail/InvalidGraph types
            raise ConfigError(f"engine.model.path: cannot load {model}: {err}") from err
        contract = read_contract(session)
        binding = settings.io_binding == "on" or (
            settings.io_binding == "auto" and session.get_providers()[0] in _GPU_PROVIDERS
        )
        kokoro = cls(session, contract, io_binding=binding or graph, path=Path(model))
        kokoro._settings = settings  # for reload() after an idle unload
        if graph:
            if contract.kind != "bucket":
                raise ConfigError(
                    "engine.runtime.cuda_graph: needs a fixed-bucket model (input_lengths "
                    "contract); this model takes variable-length input"
                )
            kokoro._graph = GraphBuffers(ort, session, contract, kokoro.device)
        _LOGGER.info(
            "Model %s: %s contract, capacity %d ids, providers %s%s%s",
            Path(model).name,
            contract.kind,
            contract.capacity,
            session.get_providers(),
            ", IO binding" if kokoro.io_binding else "",
            ", CUDA graph" if graph else "",
        )
        return kokoro

    def unload(self) -> None:
        """Drop the ORT session (its memory); :meth:`reload` (or, when ``lazy``, the next
        :meth:`run`) reopens the same file."""
        with self._reopen:
            self.session, self._graph = None, None  # type: ignore[assignment]

    def reload(self) -> None:
        if not self.lazy:
            self._ensure_open()

    def _ensure_open(self) -> None:
        with self._reopen:  # concurrent callers: one reopens, the others wait
            if self.session is None:
                fresh = KokoroSession.open(self.path, self._settings)  # type: ignore[arg-type]
                self.session, self._graph = fresh.session, fresh._graph

    def end_profiling(self) -> str | None:
        """Write the ORT profile (JSON, chrome://tracing) if profiling is on; its path."""
        if self.session is None or not self.session.get_session_options().enable_profiling:
            return None
        return self.session.end_profiling()

    def run_options(self) -> Any:
        """Per-call options; setting ``terminate = True`` from another thread aborts the call."""
        return import_onnxruntime().RunOptions()

    def run(
        self, ids: list[int], style: np.ndarray, speed: float, options: Any = None
    ) -> np.ndarray:
        """Phoneme ids (no pads) -> float32 audio at 24 kHz."""
        return self.run_timed(ids, style, speed, options)[0]

    def run_timed(
        self, ids: list[int], style: np.ndarray, speed: float, options: Any = None
    ) -> tuple[np.ndarray, np.ndarray | None, int]:
        """:meth:`run`, with the token durations (frames, pads included) when the model
        returns them (the fixed-bucket contract) and the samples per frame."""
        c = self.contract
        n = len(ids)
        if n > c.capacity:
            raise ValueError(f"{n} ids exceed the model's capacity of {c.capacity}")
        feed: dict[str, np.ndarray] = {
            c.style: np.ascontiguousarray(style, dtype=np.float32).reshape(1, -1),
            c.speed: np.asarray([speed], dtype=c.speed_dtype),
        }
        if c.kind == "bucket":
            # read_contract sets all three for this kind
            assert c.bucket is not None and c.lengths is not None and c.duration is not None
            tokens = np.zeros((1, c.bucket), dtype=np.int64)
            tokens[0, 1 : n + 1] = ids
            feed[c.ids] = tokens
            feed[c.lengths] = np.asarray([n + 2], dtype=np.int64)
            if self._graph is not None:
                wave, duration = self._graph.run(feed, options)
            else:
                wave, duration = self._run(feed, [c.audio, c.duration], options)
            wave = np.asarray(wave, dtype=np.float32).reshape(-1)
            durations = np.rint(np.asarray(duration).reshape(-1)[: n + 2]).astype(np.int64)
            frames = int(durations.sum())
            wave = wave[: min(wave.size, frames * SAMPLES_PER_FRAME + TAIL_SAMPLES)]
            return wave, durations, SAMPLES_PER_FRAME
        feed[c.ids] = np.asarray([[0, *ids, 0]], dtype=np.int64)
        (wave,) = self._run(feed, [c.audio], options)
        return np.asarray(wave, dtype=np.float32).reshape(-1), None, CLASSIC_SAMPLES_PER_FRAME

    def _run(self, feed: dict[str, np.ndarray], outputs: list[str], options: Any) -> list[Any]:
        if self.session is None:
            self._ensure_open()
        if not self.io_binding:
            return list(self.session.run(outputs, feed, options))
        binding = self.session.io_binding()
        for name, value in feed.items():
            binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding, options)
        return binding.copy_outputs_to_cpu()
