"""Both model contracts on tiny graphs built with onnx.helper (no real model needed)."""

import asyncio

import numpy as np
import pytest

from fastkokoro_wyoming.config import EngineConfig, LimitsConfig
from fastkokoro_wyoming.engine import Engine, SynthesisRequest
from fastkokoro_wyoming.engine.errors import ConfigError
from fastkokoro_wyoming.engine.model.runtime import (
    KokoroSession,
    RuntimeSettings,
    resolve_providers,
)
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.support.tiny_engine import SpellingG2P, voice_store
from tests.support.tiny_models import FRAMES_PER_ID, build_bucket_model, build_classic_model

STYLE = np.zeros((1, 256), np.float32)


@pytest.fixture(scope="module")
def bucket_session(tmp_path_factory):
    path = build_bucket_model(tmp_path_factory.mktemp("m") / "b16.onnx", bucket=16)
    return KokoroSession.open(path, RuntimeSettings())


def test_contract_read_from_graph(bucket_session, tmp_path):
    c = bucket_session.contract
    assert (c.kind, c.bucket, c.capacity, c.lengths) == ("bucket", 16, 14, "input_lengths")
    classic = KokoroSession.open(build_classic_model(tmp_path / "c.onnx"), RuntimeSettings())
    assert (classic.contract.kind, classic.contract.capacity, classic.contract.ids) == (
        "classic",
        510,
        "tokens",
    )


def test_bucket_pads_passes_length_and_trims(bucket_session):
    ids = [5, 6, 7]
    audio = bucket_session.run(ids, STYLE, 1.0)
    # every sample is sum(input_ids): the pads are zeros and nothing else was added
    assert np.all(audio == sum(ids))
    # (n + 2 pads) positions x 2 frames x 480 samples + the 3,120-sample tail
    assert audio.size == (len(ids) + 2) * FRAMES_PER_ID * 480 + 3120
    full = bucket_session.run(list(range(1, 15)), STYLE, 1.0)
    assert full.size == 16 * FRAMES_PER_ID * 480 + 3120
    with pytest.raises(ValueError, match="capacity"):
        bucket_session.run(list(range(1, 16)), STYLE, 1.0)


def test_classic_wraps_ids_in_pads(tmp_path):
    s = KokoroSession.open(build_classic_model(tmp_path / "c.onnx"), RuntimeSettings())
    audio = s.run([5, 6], STYLE, 1.0)
    assert audio.size == 4 * 600
    assert list(audio[::600]) == [0.0, 5.0, 6.0, 0.0]


def tiny_engine(session, **cfg):
    table = LanguageTable()
    return Engine(
        EngineConfig(limits=LimitsConfig(max_input_chars=10_000), **cfg),
        voices=voice_store(table, ("af_heart",)),
        vocab=Vocab.load(),
        g2p=SpellingG2P(table),
        session=session,
        scheduler=Scheduler(1, 64),
        languages=LanguageTable(),
    )


async def test_segment_too_long_for_bucket_is_split_not_truncated(bucket_session):
    eng = tiny_engine(bucket_session)
    text = "abc def hij klm nop qrs tuv wxyz abc."  # one sentence, 36 ids > 14
    expected_ids = eng.vocab.encode(text)
    chunks = [c async for c in eng.synthesize(SynthesisRequest(text))]
    assert len(chunks) >= 3
    # each chunk's samples carry the sum of the ids it was given: together, all of them,
    # less the one space (id 16) dropped at each cut between words
    space = eng.vocab.encode(" ")[0]
    assert sum(int(c[0]) for c in chunks) == sum(expected_ids) - space * (len(chunks) - 1)
    eng.close()


async def test_pause_is_exact_silence_without_a_model_call(bucket_session):
    eng = tiny_engine(bucket_session)
    chunks = [c async for c in eng.synthesize(SynthesisRequest("ab [pause:0.5s] cd"))]
    assert [c.size for c in chunks][1] == 12_000 and not chunks[1].any()
    assert chunks[0][0] > 0 and chunks[2][0] > 0
    eng.close()


async def test_cancel_drops_queued_calls(bucket_session):
    eng = tiny_engine(bucket_session)
    agen = eng.synthesize(SynthesisRequest(". ".join(["abc def"] * 50)))
    await agen.__anext__()
    await agen.aclose()
    await asyncio.sleep(0.05)
    assert eng.scheduler.queued == 0 and eng.active_streams == 0
    eng.close()


def test_provider_fallback_and_errors():
    assert resolve_providers(("cuda", "cpu"), ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert resolve_providers(("auto",), ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    with pytest.raises(ConfigError, match=r"fastkokoro-wyoming\[gpu\]"):
        resolve_providers(("cuda",), ["CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="TensorrtExecutionProvider"):
        resolve_providers(("tensorrt",), ["CPUExecutionProvider"])


def test_profiling_writes_an_ort_trace(tmp_path):
    import json
    from pathlib import Path

    path = build_classic_model(tmp_path / "c.onnx")
    s = KokoroSession.open(path, RuntimeSettings(profile_dir=tmp_path / "prof"))
    s.run([5, 6], STYLE, 1.0)
    trace = s.end_profiling()
    assert trace and (tmp_path / "prof") in Path(trace).parents
    events = json.loads(Path(trace).read_text())
    assert any(e.get("name") == "model_run" for e in events)


class SlowG2P(SpellingG2P):
    def phonemize(self, text, code, normalize=True):
        import time

        time.sleep(0.3)  # long enough for a cancel to land while a worker thread runs it
        return super().phonemize(text, code, normalize=normalize)


async def test_cancel_during_g2p_releases_the_stream(bucket_session):
    eng = tiny_engine(bucket_session)
    eng.g2p = SlowG2P(LanguageTable())
    agen = eng.synthesize(SynthesisRequest(". ".join(["abc def"] * 20)))
    step = asyncio.ensure_future(agen.__anext__())
    await asyncio.sleep(0.1)  # the engine now waits on next(plan) (G2P) in a thread
    step.cancel()
    with pytest.raises(asyncio.CancelledError):
        await step
    assert eng.active_streams == 0
    await asyncio.sleep(0.5)
    eng.close()


class GatedG2P(SpellingG2P):
    """The first sentence is instant; later ones wait until the test opens the gate."""

    def __init__(self):
        import threading

        super().__init__(LanguageTable())
        self.gate = threading.Event()

    def phonemize(self, text, code, normalize=True):
        if self.calls:  # SpellingG2P records each call
            self.gate.wait(5)
        return super().phonemize(text, code, normalize=normalize)


async def test_first_segment_is_yielded_while_later_ones_are_still_planned(bucket_session):
    eng = tiny_engine(bucket_session)
    eng.g2p = GatedG2P()
    agen = eng.synthesize(SynthesisRequest("abc def. ghi jkl. mno pqr."))
    first = await asyncio.wait_for(agen.__anext__(), 2)  # G2P of sentence 2 is still blocked
    assert first[0] == sum(eng.vocab.encode("abc def."))
    eng.g2p.gate.set()
    rest = [c async for c in agen]
    assert len(rest) == 2 and eng.active_streams == 0
    eng.close()


def test_io_binding_gives_the_same_audio(tmp_path):
    bucket = build_bucket_model(tmp_path / "b.onnx", bucket=16)
    classic = build_classic_model(tmp_path / "c.onnx")
    for path in (bucket, classic):
        plain = KokoroSession.open(path, RuntimeSettings(io_binding="off"))
        bound = KokoroSession.open(path, RuntimeSettings(io_binding="on"))
        assert bound.io_binding and not plain.io_binding
        for ids in ([5], [5, 6, 7], list(range(1, 15))):
            assert np.array_equal(plain.run(ids, STYLE, 1.0), bound.run(ids, STYLE, 1.0))
    with pytest.raises(ConfigError, match="engine.runtime.io_binding"):
        KokoroSession.open(classic, RuntimeSettings(io_binding="sometimes"))


def test_graph_buffers_update_in_place_between_calls(tmp_path):
    """The CUDA-graph path's buffer handling (bound once, updated in place), on the CPU."""
    from fastkokoro_wyoming.engine.model.cuda_graphs import GraphBuffers
    from fastkokoro_wyoming.engine.model.runtime import import_onnxruntime

    path = build_bucket_model(tmp_path / "b.onnx", bucket=16)
    plain = KokoroSession.open(path, RuntimeSettings())
    replay = KokoroSession.open(path, RuntimeSettings())
    replay._graph = GraphBuffers(import_onnxruntime(), replay.session, replay.contract, "cpu")
    rng = np.random.default_rng(1)
    for n in (3, 14, 1, 9):
        ids = [int(x) for x in rng.integers(1, 170, n)]
        assert np.array_equal(plain.run(ids, STYLE, 1.0), replay.run(ids, STYLE, 1.0))


def test_cuda_graph_needs_a_gpu_and_gpu_defaults(tmp_path, caplog):
    from fastkokoro_wyoming.engine.model.runtime import provider_options

    path = build_bucket_model(tmp_path / "b.onnx", bucket=16)
    s = KokoroSession.open(path, RuntimeSettings(cuda_graph=True))
    assert s._graph is None and "needs CUDA or TensorRT" in caplog.text
    assert s.run([5, 6], STYLE, 1.0)[0] == 11
    cuda = "CUDAExecutionProvider"
    assert provider_options(cuda, RuntimeSettings())["cudnn_conv_algo_search"] == "DEFAULT"
    graph = provider_options(cuda, RuntimeSettings(cuda_graph=True))
    assert graph["enable_cuda_graph"] == "1" and graph["cudnn_conv_algo_search"] == "EXHAUSTIVE"
    mine = RuntimeSettings(provider_options={"cuda": {"cudnn_conv_algo_search": "HEURISTIC"}})
    assert provider_options(cuda, mine)["cudnn_conv_algo_search"] == "HEURISTIC"
    trt = provider_options("TensorrtExecutionProvider", RuntimeSettings(cache_dir=tmp_path))
    assert trt["trt_engine_cache_path"] == str(tmp_path / "tensorrt")


async def test_profile_dir_traces_every_request(tmp_path, bucket_session):
    import json

    from fastkokoro_wyoming.engine.serving.trace import TraceSink

    eng = tiny_engine(bucket_session)
    eng.traces = TraceSink(tmp_path / "prof")
    chunks = [c async for c in eng.synthesize(SynthesisRequest("abc def. ghi [pause:0.2s] jkl."))]
    agen = eng.synthesize(SynthesisRequest(". ".join(["abc def"] * 20)))
    await agen.__anext__()
    await agen.aclose()
    lines = (tmp_path / "prof" / "requests.jsonl").read_text().splitlines()
    done, cancelled = [json.loads(x) for x in lines]
    assert done["outcome"] == "done" and cancelled["outcome"] == "cancelled"
    assert len(done["calls"]) == len(chunks) - 1  # the pause needs no model call
    assert all(c["run_ms"] >= 0 and c["queue_ms"] >= 0 for c in done["calls"])
    assert done["first_chunk_ms"] <= done["total_ms"] and len(done["plan_ms"]) >= 3
    eng.close()


def test_cuts_inside_a_sentence_keep_a_short_pause_not_the_edge_silence():
    from fastkokoro_wyoming.engine.serving.plan import JOIN_LEAD, JOIN_TAIL, Segment

    audio = np.zeros(24_000, np.float32)
    audio[7_200:14_400] = 0.5  # 0.3 s of silence, 0.3 s of "speech", 0.4 s of silence
    whole = Segment([1], "a.")
    assert whole.trim_join(audio) is audio  # a sentence on its own keeps Kokoro's edges
    head = Segment([1], "a,", joins_next=True)
    assert head.trim_join(audio).size == 14_400 + JOIN_TAIL
    middle = Segment([1], "a", joins_prev=True, joins_next=True)
    assert middle.trim_join(audio).size == 7_200 + JOIN_LEAD + JOIN_TAIL
    assert Segment([1], "a", joins_prev=True).trim_join(np.zeros(100, np.float32)).size == 100


async def test_engine_marks_cuts_inside_sentences(bucket_session):
    eng = tiny_engine(bucket_session)  # bucket capacity 14: this sentence needs cuts
    prep = eng.prepare(SynthesisRequest("abc def hij klm nop qrs tuv wxyz abc."))
    segs = list(eng.planner.plan(prep))
    assert [s.joins_next for s in segs] == [True] * (len(segs) - 1) + [False]
    assert [s.joins_prev for s in segs] == [False] + [True] * (len(segs) - 1)
    eng.close()
