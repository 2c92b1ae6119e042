"""PCM kernels: numba and NumPy give the historical bytes; trimming; framing; warmup."""

from __future__ import annotations

import numpy as np
import pytest

from fastkokoro_wyoming.audio import float_to_pcm16
from fastkokoro_wyoming.engine.serving import pcm
from fastkokoro_wyoming.engine.serving.pcm import PcmKernels, numba_available
from fastkokoro_wyoming.wyoming_api.framing import PcmFramer

# NumPy's cast of NaN warns, as float_to_pcm16 always did; the numba kernel is silent.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")
KINDS = ["numpy", pytest.param("numba", marks=needs_numba)]


def legacy(samples: np.ndarray) -> bytes:
    """What audio.float_to_pcm16 did before the kernels (the reference)."""
    with np.errstate(invalid="ignore"):
        return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


@pytest.fixture(params=KINDS)
def kernels(request: pytest.FixtureRequest) -> PcmKernels:
    k = PcmKernels(use_numba=request.param == "numba")
    assert k.name == request.param
    return k


def _edge_values() -> np.ndarray:
    f32 = np.finfo(np.float32)
    edges = [
        0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.0000001, -1.0000001, 2.0, -3.5, 1e30, -1e30,
        f32.max, -f32.max, f32.tiny, -f32.tiny, f32.smallest_subnormal, np.inf, -np.inf, np.nan,
        np.nextafter(np.float32(1), np.float32(0)), np.nextafter(np.float32(-1), np.float32(0)),
    ]  # fmt: skip
    # Values next to every k / 32767, where float32 rounding of x * 32767 could differ.
    k = np.arange(-32767, 32768, dtype=np.float64)
    centers = (k / 32767.0).astype(np.float32)
    near = [centers, np.nextafter(centers, np.float32(2)), np.nextafter(centers, np.float32(-2))]
    return np.concatenate([np.asarray(edges, np.float32), *near]).astype(np.float32)


def _random(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(n) * 0.8).astype(np.float32)  # some beyond ±1


# --- conversion --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 1023, 1024, 1025, 24_000, 600_001])
def test_conversion_matches_legacy_on_random_input(kernels: PcmKernels, n: int) -> None:
    x = _random(n, seed=n)
    assert kernels.to_pcm16(x) == legacy(x)


def test_conversion_matches_legacy_on_edges(kernels: PcmKernels) -> None:
    x = _edge_values()
    out = kernels.to_pcm16(x)
    assert out == legacy(x)
    ints = np.frombuffer(out, "<i2")
    assert ints[x.tolist().index(1.0)] == 32767 and ints[x.tolist().index(-1.0)] == -32767
    assert ints[np.isnan(x)].tolist() == [0]  # NaN -> silence
    assert ints[np.isinf(x)].tolist() == [32767, -32767]


def test_conversion_is_exact_for_every_float32_in_half_to_one(kernels: PcmKernels) -> None:
    """All 2**23 float32 in [0.5, 1) and their negatives: scaling rounds in float32."""
    bits = np.arange(0x3F000000, 0x3F800000, dtype=np.uint32)
    x = bits.view(np.float32)
    assert kernels.to_pcm16(x) == legacy(x)
    assert kernels.to_pcm16(-x) == legacy(-x)


def test_conversion_other_layouts_and_dtypes(kernels: PcmKernels) -> None:
    x = _random(4001)
    readonly = np.frombuffer(x.tobytes(), np.float32)
    assert not readonly.flags.writeable
    assert kernels.to_pcm16(readonly) == legacy(x)
    assert kernels.to_pcm16(x[::3]) == legacy(x[::3])  # strided
    assert kernels.to_pcm16(x[:4000].reshape(2, -1)) == legacy(x[:4000])  # 2-D -> flat
    as64 = x.astype(np.float64) * 1.0000001  # float64 scales in float64, like before
    assert kernels.to_pcm16(as64) == legacy(as64)
    assert kernels.to_pcm16(x.tolist()) == legacy(np.asarray(x.tolist()))
    assert kernels.to_pcm16(np.array([0, 1, -2, 5])) == legacy(np.array([0, 1, -2, 5]))
    big = np.ascontiguousarray(x.astype(">f4"))  # big-endian input
    assert kernels.to_pcm16(big) == legacy(x)


@needs_numba
def test_numba_and_numpy_agree_byte_for_byte() -> None:
    fast, ref = PcmKernels(use_numba=True), PcmKernels(use_numba=False)
    for seed, n in enumerate([0, 5, 999, 48_000]):
        x = np.concatenate([_random(n, seed), _edge_values()])
        assert fast.to_pcm16(x) == ref.to_pcm16(x)


def test_float_to_pcm16_delegates_and_keeps_its_output() -> None:
    x = np.concatenate([_random(10_000), _edge_values()])
    assert float_to_pcm16(x) == legacy(x)
    assert float_to_pcm16(np.zeros(0, np.float32)) == b""


# --- trimming ----------------------------------------------------------------------------


def test_trim_bounds(kernels: PcmKernels) -> None:
    x = np.zeros(1000, np.float32)
    assert kernels.trim_bounds(x, 1e-3) == slice(0, 0)  # all silence
    assert kernels.trim(x).size == 0
    assert kernels.trim_bounds(np.zeros(0, np.float32), 1e-3) == slice(0, 0)
    x[100] = 0.5
    x[700] = -0.5
    assert kernels.trim_bounds(x, 1e-3) == slice(100, 701)
    assert kernels.trim_bounds(x, 1e-3, margin=50) == slice(50, 751)
    assert kernels.trim_bounds(x, 1e-3, margin=10_000) == slice(0, 1000)  # clamped
    x[5] = 1e-3  # equal to the threshold: still silence
    x[6] = np.nan  # NaN: not louder than anything
    assert kernels.trim_bounds(x, 1e-3) == slice(100, 701)
    x[0] = -0.01  # the very first/last samples
    x[-1] = 0.01
    assert kernels.trim_bounds(x, 1e-3) == slice(0, 1000)


def test_trim_view_and_margin_in_ms(kernels: PcmKernels) -> None:
    x = np.zeros(24_000, np.float32)
    x[12_000:12_010] = 0.3
    out = kernels.trim(x, threshold=1e-3, margin_ms=5.0)  # 5 ms = 120 samples
    assert out.size == 10 + 2 * 120
    assert np.shares_memory(out, x)
    assert kernels.trim(x.astype(np.float64), margin_ms=0).size == 10


@needs_numba
def test_trim_numba_and_numpy_agree() -> None:
    fast, ref = PcmKernels(use_numba=True), PcmKernels(use_numba=False)
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(0, 500))
        x = (rng.standard_normal(n) * rng.choice([1e-4, 1e-3, 1e-2])).astype(np.float32)
        thr = float(rng.choice([1e-4, 1e-3, 5e-3]))
        margin = int(rng.integers(0, 20))
        assert fast.trim_bounds(x, thr, margin) == ref.trim_bounds(x, thr, margin)


# --- framing -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 64, 1000, 1024])
def test_framer_frames_and_remainders(kernels: PcmKernels, size: int) -> None:
    rng = np.random.default_rng(size)
    pieces = [_random(int(n), seed=i) for i, n in enumerate(rng.integers(0, 3 * size, 25))]
    pieces += [_random(size), _random(0), _random(size - 1 or 1)]
    framer = PcmFramer(size, kernels)
    frames: list[bytes] = []
    for piece in pieces:
        out = framer.push(piece)
        assert all(len(f) == 2 * size for f in out)
        assert 0 <= framer.pending < size
        frames += out
    tail = framer.flush()
    assert len(tail) == 2 * (sum(p.size for p in pieces) % size)
    assert b"".join(frames) + tail == legacy(np.concatenate(pieces))
    assert framer.pending == 0 and framer.flush() == b""


def test_framer_holds_until_a_frame_is_full(kernels: PcmKernels) -> None:
    framer = PcmFramer(4, kernels)
    assert framer.push(np.array([0.1, 0.2], np.float32)) == []
    assert framer.pending == 2
    assert framer.push(np.array([0.3], np.float64)) == []  # any dtype
    (frame,) = framer.push(np.array([0.4, 0.5], np.float32))
    assert frame == legacy(np.array([0.1, 0.2], np.float32)) + legacy(
        np.array([0.3], np.float64)
    ) + legacy(np.array([0.4], np.float32))
    assert framer.flush() == legacy(np.array([0.5], np.float32))


def test_framer_rejects_empty_frames() -> None:
    with pytest.raises(ValueError):
        PcmFramer(0)


def test_framer_defaults_to_the_process_kernels() -> None:
    framer = PcmFramer(10)
    assert framer._kernels is pcm.default_kernels()
    assert pcm.default_kernels() is pcm.default_kernels()


# --- choice and warmup -------------------------------------------------------------------


def test_numpy_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pcm.ENV_VAR, "numpy")
    assert PcmKernels().numba is False
    monkeypatch.setenv(pcm.ENV_VAR, "")
    monkeypatch.setenv("NUMBA_DISABLE_JIT", "1")
    assert PcmKernels().numba is False
    monkeypatch.delenv("NUMBA_DISABLE_JIT")
    assert PcmKernels().numba is numba_available()
    assert PcmKernels(use_numba=False).dispatchers == ()


def test_numba_required_but_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcm, "_numba_kernels", lambda: None)
    with pytest.raises(ImportError):
        PcmKernels(use_numba=True)
    assert PcmKernels().numba is False or numba_available()


def test_numpy_warmup() -> None:
    k = PcmKernels(use_numba=False)
    assert k.warmup() >= 0.0


@needs_numba
def test_numba_warmup_compiles_everything_up_front() -> None:
    k = PcmKernels(use_numba=True)
    assert k.warmup() >= 0.0
    signatures = [list(d.signatures) for d in k.dispatchers]
    assert len(k.dispatchers) == 2 and all(len(s) == 1 for s in signatures)
    # Requests of every kind the front ends make: no new compilation.
    x = _random(5000)
    k.to_pcm16(x)
    k.to_pcm16(np.frombuffer(x.tobytes(), np.float32))
    k.trim(x)
    framer = PcmFramer(1024, k)
    framer.push(x)
    framer.flush()
    assert [list(d.signatures) for d in k.dispatchers] == signatures
    for d in k.dispatchers:  # explicit signatures: a stray type fails, it never compiles
        with pytest.raises(TypeError):
            d(np.zeros(3, np.float64), np.zeros(3, np.int16))
