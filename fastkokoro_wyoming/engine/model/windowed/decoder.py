"""Plan a Kokoro segment once, then decode its audio window by window.

A segment's *plan* runs the cheap ~5 % of the model over the whole segment (front, fr,
phase); each window then runs only the generator over ``[lo - C, hi + C)`` frames and keeps
the samples of ``[lo, hi)``. The generator's instance norms get the segment's statistics
from outside (a per-voice prior, :mod:`.norm_stats`), so a window computes what the whole
decode computes there, up to the model's int8 noise. Sample ``i`` of a window starting at
frame ``lo`` is global sample ``600 * lo + i``; all windows of a segment concatenate to
exactly ``600 * F`` samples.

Windows come in a handful of lengths (``window_lengths``) so a provider that compiles per
shape (TensorRT, CUDA graphs) sees few shapes: a window near a segment edge takes its
missing context from the other side instead of padding, and only a segment shorter than
the window is padded (zeros after the end; the padding's samples are dropped).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .graphs import SAMPLES_PER_FRAME, STEPS_PER_FRAME, WindowedGraphs, derive

CONTEXT_FRAMES = 4  # generator receptive field is 2-3 frames each side (measured): C = 4
FIRST_WINDOW = 10  # frames (250 ms of audio) before the first audio can be sent
GROWTH = 2.0
MAX_WINDOW = 80


@dataclass(frozen=True)
class SegmentPlan:
    """Everything a window needs, computed once per segment; read-only, shareable."""

    frames: int  # F: asr frames; audio is 600 * F samples
    durations: np.ndarray  # int64 [n_ids + 2]: frames per token, pads included; sums to F
    xgen: np.ndarray = field(repr=False)  # [1, 512, 2F]
    f0: np.ndarray = field(repr=False)  # [1, 2F]
    phase: np.ndarray = field(repr=False)  # [1, 2F, 9]
    style: np.ndarray = field(repr=False)  # [1, 256]
    stats: dict[str, np.ndarray] = field(repr=False)  # norm{k}_mean|var [1, C, 1]

    @property
    def samples(self) -> int:
        return SAMPLES_PER_FRAME * self.frames


def window_bounds(
    frames: int, first: int = FIRST_WINDOW, growth: float = GROWTH, max_frames: int = MAX_WINDOW
) -> list[tuple[int, int]]:
    """Core frame ranges ``[lo, hi)`` covering ``[0, frames)``: ``first`` frames, then each
    window ``growth`` times the last, capped at ``max_frames``. A remainder smaller than
    ``first`` is merged into the window before it (one fixed-cost call fewer) when that
    stays within ``max_frames``."""
    if frames <= 0:
        return []
    sizes = window_sizes(first, growth, max_frames)
    out: list[tuple[int, int]] = []
    lo, k = 0, 0
    while lo < frames:
        w = sizes[min(k, len(sizes) - 1)]
        hi = min(frames, lo + w)
        if 0 < frames - hi < first and frames - lo <= max(w, max_frames):
            hi = frames
        out.append((lo, hi))
        lo, k = hi, k + 1
    return out


def window_sizes(
    first: int = FIRST_WINDOW, growth: float = GROWTH, max_frames: int = MAX_WINDOW
) -> list[int]:
    """The distinct core sizes of a schedule: ``first, first*growth, ... max_frames``."""
    if first < 1 or growth < 1 or max_frames < first:
        raise ValueError(f"bad window schedule: first={first} growth={growth} max={max_frames}")
    sizes = [first]
    while sizes[-1] < max_frames and growth > 1:
        sizes.append(min(max_frames, max(sizes[-1] + 1, int(round(sizes[-1] * growth)))))
    return sizes


class WindowedDecoder:
    """ORT sessions of the derived graphs; ``plan`` and ``decode_window`` are thread-safe.

    ``session_options`` and ``providers`` are the caller's (the engine's runtime settings),
    used for every session. The stats session is opened on first use (calibration only).
    """

    def __init__(
        self,
        graphs: WindowedGraphs,
        session_options: Any = None,
        providers: Sequence[Any] | None = None,
        *,
        context: int = CONTEXT_FRAMES,
        first: int = FIRST_WINDOW,
        growth: float = GROWTH,
        max_frames: int = MAX_WINDOW,
        fixed_shapes: bool = True,
    ) -> None:
        import onnxruntime as ort

        self.graphs = graphs
        self.context = context
        self.first, self.growth, self.max_frames = first, growth, max_frames
        self.fixed_shapes = fixed_shapes
        self._ort = ort
        self._options = session_options
        self._providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.front = self._open("front")
        self.fr = self._open("fr")
        self.phase = self._open("phase")
        self.generator = self._open("generator")
        self._generator_factory: Callable[[], Any] | None = None  # with_generator's
        self.speedups: dict[int, float] = {}  # with_generator's: compiled length -> its gain
        self._stats: Any = None
        self._lock = threading.Lock()
        self.norm_names = [
            f"norm{k:02d}_{s}" for k in range(graphs.norm_count) for s in ("mean", "var")
        ]

    @classmethod
    def open(
        cls,
        model_path: Path,
        cache_dir: Path,
        session_options: Any = None,
        providers: Sequence[Any] | None = None,
        int8: str = "auto",
        **kw: Any,
    ) -> WindowedDecoder:
        """Derive (or load from ``cache_dir``) the graphs of ``model_path`` and open them;
        on the CPU provider with the int8-weight convolutions where they pay (``int8``:
        auto | on | off, see :mod:`.int8select`)."""
        graphs = derive(model_path, cache_dir)
        first = (list(providers or []) or ["CPUExecutionProvider"])[0]
        if (first[0] if isinstance(first, tuple) else first) == "CPUExecutionProvider":
            from .int8select import with_int8

            graphs = with_int8(graphs, int8)
        return cls(graphs, session_options, providers, **kw)

    @property
    def session_options(self) -> Any:
        return self._options

    @property
    def providers(self) -> list[Any]:
        return list(self._providers)

    def open_session(self, name: str) -> Any:
        """A new ORT session of graph ``name`` with this decoder's options."""
        return self._open(name)

    def _open(self, name: str) -> Any:
        return self._ort.InferenceSession(
            str(self.graphs.path(name)), sess_options=self._options, providers=self._providers
        )

    def with_generator(
        self, generator: Any, reopen: Callable[[], Any], speedups: dict[int, float] | None = None
    ) -> WindowedDecoder:
        """A decoder sharing this one's sessions but running ``generator`` (same ``run``
        signature as the ORT session: the OpenVINO trunk) at fixed window lengths (it is
        compiled per length); ``reopen()`` gives it back after an idle unload. The engine
        swaps decoders between segments, so a segment never changes generator midway.

        ``speedups`` (compiled length -> how much faster ``generator`` runs it than ONNX
        Runtime): a window is widened to a compiled length only where that still pays
        (:meth:`span`); else it runs at its exact length, which ``generator`` hands to its
        ONNX Runtime fallback. Without them every window runs at a compiled length."""
        other = copy.copy(self)
        other.generator, other.fixed_shapes = generator, True
        other._generator_factory = reopen
        other.speedups = dict(speedups or {})
        return other

    def unload(self) -> None:
        """Drop every session (idle unload); :meth:`reload` reopens them."""
        with self._lock:
            unload = getattr(self.generator, "unload", None)
            if unload is not None:
                unload()
            self.front = self.fr = self.phase = self.generator = self._stats = None

    def reload(self) -> None:
        self.front, self.fr = self._open("front"), self._open("fr")
        self.phase = self._open("phase")
        make = self._generator_factory
        self.generator = make() if make is not None else self._open("generator")

    @property
    def stats_session(self) -> Any:
        with self._lock:
            if self._stats is None:
                self._stats = self._open("stats")
            return self._stats

    # ------------------------------------------------------------------ per segment

    def run_options(self) -> Any:
        """Per-call options: ``terminate = True`` aborts a call in flight (client gone)."""
        return self._ort.RunOptions()

    def analyse(
        self, ids: Sequence[int], style: np.ndarray, speed: float, options: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """front + fr + phase over a whole segment: ``xgen, f0, phase, durations``."""
        style = np.ascontiguousarray(style, dtype=np.float32).reshape(1, -1)
        tokens = np.asarray([[0, *ids, 0]], dtype=np.int64)
        asr, f0, n, dur = self.front.run(
            ["asr", "f0", "n", "durations"],
            {"tokens": tokens, "style": style, "speed": np.asarray([speed], np.float32)},
            options,
        )
        feed = {"asr": asr, "f0": f0, "n": n, "style": style}
        (xgen,) = self.fr.run(["xgen"], feed, options)
        (phase,) = self.phase.run(["phase"], {"f0": f0}, options)
        return xgen, f0, phase, np.rint(np.asarray(dur).reshape(-1)).astype(np.int64)

    def durations(
        self, ids: Sequence[int], style: np.ndarray, speed: float, options: Any = None
    ) -> np.ndarray:
        """The front graph alone: frames per token (pads included), as :meth:`plan` has
        them; word timestamps for a segment decoded whole."""
        style = np.ascontiguousarray(style, dtype=np.float32).reshape(1, -1)
        tokens = np.asarray([[0, *ids, 0]], dtype=np.int64)
        (dur,) = self.front.run(
            ["durations"],
            {"tokens": tokens, "style": style, "speed": np.asarray([speed], np.float32)},
            options,
        )
        return np.rint(np.asarray(dur).reshape(-1)).astype(np.int64)

    def plan(
        self,
        ids: Sequence[int],
        style: np.ndarray,
        speed: float,
        stats: dict[str, np.ndarray] | None,
        options: Any = None,
    ) -> SegmentPlan:
        """Analyse a segment (ids without pads) for windowing with the norm ``stats`` (from
        :meth:`NormPriors.row_stats`); ``None`` uses the segment's exact statistics (one
        extra generator-sized call: for checks, not for latency)."""
        style = np.ascontiguousarray(style, dtype=np.float32).reshape(1, -1)
        xgen, f0, phase, dur = self.analyse(ids, style, speed, options)
        frames = int(xgen.shape[-1]) // STEPS_PER_FRAME
        if int(dur.sum()) != frames:
            raise RuntimeError(f"durations sum to {int(dur.sum())}, features have {frames}")
        if stats is None:
            stats = self.exact_stats(xgen, f0, phase, style)
        missing = [n for n in self.norm_names if n not in stats]
        if missing:
            raise ValueError(f"norm statistics missing: {missing[:3]}...")
        return SegmentPlan(frames, dur, xgen, f0, phase, style, stats)

    def exact_stats(
        self,
        xgen: np.ndarray,
        f0: np.ndarray,
        phase: np.ndarray,
        style: np.ndarray,
        options: Any = None,
    ) -> dict[str, np.ndarray]:
        """Every generator norm's mean and variance over the whole segment."""
        sess = self.stats_session
        outs = sess.run(None, {"xgen": xgen, "f0": f0, "phase": phase, "style": style}, options)
        return {o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)}

    # ------------------------------------------------------------------ windows

    def window_bounds(self, frames: int) -> list[tuple[int, int]]:
        """This decoder's schedule (see :func:`window_bounds`)."""
        return window_bounds(frames, self.first, self.growth, self.max_frames)

    @property
    def window_sizes(self) -> list[int]:
        """The distinct core sizes (frames) of this decoder's schedule (warm-up shapes)."""
        return window_sizes(self.first, self.growth, self.max_frames)

    @property
    def window_lengths(self) -> list[int]:
        """The generator input lengths (frames, context included) windows are run at."""
        return [
            w + 2 * self.context for w in window_sizes(self.first, self.growth, self.max_frames)
        ]

    def span(self, frames: int, lo: int, hi: int) -> tuple[int, int, int]:
        """Frames ``[a, b)`` the generator runs over for core ``[lo, hi)``, and the zero
        frames padded after ``b`` to reach a fixed length.

        With :attr:`speedups`, a window whose exact span is ``n`` frames is widened to the
        compiled length ``L`` only when ``n >= L / speedup(L)`` (ONNX Runtime's cost grows
        with the frames it runs): a segment's first and last windows are short of a
        compiled length, and widening them wasted more than OpenVINO gained (measured:
        OpenVINO int8 made 0.8-0.9x ONNX Runtime's audio on medium texts that way)."""
        c = self.context
        exact = max(lo - c, 0), min(hi + c, frames), 0
        if not self.fixed_shapes:
            return exact
        want = (hi - lo) + 2 * c
        length = next((n for n in self.window_lengths if n >= want), want)
        if self.speedups:
            n = exact[1] - exact[0]
            gain = self.speedups.get(length, 0.0)
            if n != length and n * gain < length:
                return exact
        a = max(lo - c, 0)
        b = a + length
        if b > frames:
            b = frames
            a = max(frames - length, 0)
        return a, b, max(0, length - (b - a))

    def decode_window(self, plan: SegmentPlan, lo: int, hi: int, options: Any = None) -> np.ndarray:
        """float32 audio of frames ``[lo, hi)``: ``600 * (hi - lo)`` samples."""
        if not 0 <= lo < hi <= plan.frames:
            raise ValueError(f"window [{lo}, {hi}) outside [0, {plan.frames})")
        a, b, pad = self.span(plan.frames, lo, hi)
        s, e = STEPS_PER_FRAME * a, STEPS_PER_FRAME * b
        xgen, f0, phase = plan.xgen[:, :, s:e], plan.f0[:, s:e], plan.phase[:, s:e, :]
        if pad:
            p = STEPS_PER_FRAME * pad
            xgen = np.pad(xgen, ((0, 0), (0, 0), (0, p)))
            f0 = np.pad(f0, ((0, 0), (0, p)))
            phase = np.pad(phase, ((0, 0), (0, p), (0, 0)), mode="edge")
        feed = {
            "xgen": np.ascontiguousarray(xgen),
            "f0": np.ascontiguousarray(f0),
            "phase": np.ascontiguousarray(phase),
            "style": plan.style,
            **plan.stats,
        }
        (audio,) = self.generator.run(["audio"], feed, options)
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        start = SAMPLES_PER_FRAME * (lo - a)
        return audio[start : start + SAMPLES_PER_FRAME * (hi - lo)]

    def decode(self, plan: SegmentPlan) -> Iterator[np.ndarray]:
        """Every window of the segment in order (concatenated: ``plan.samples`` samples)."""
        for lo, hi in self.window_bounds(plan.frames):
            yield self.decode_window(plan, lo, hi)

    def decode_whole(self, plan: SegmentPlan) -> np.ndarray:
        """The generator over the whole segment in one call, with the plan's statistics."""
        feed = {"xgen": plan.xgen, "f0": plan.f0, "phase": plan.phase, "style": plan.style}
        (audio,) = self.generator.run(["audio"], {**feed, **plan.stats})
        return np.asarray(audio, dtype=np.float32).reshape(-1)
