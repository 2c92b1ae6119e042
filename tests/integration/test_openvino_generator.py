"""engine.runtime.backend: openvino on the real model (skipped when openvino is missing).

The generator's trunk in OpenVINO, in each precision this CPU can run (bf16 where it has
AMX or AVX512_BF16, else f32; int8 as NNCF quantises it, where the ``openvino-int8`` extra
is installed), against today's windowed ONNX Runtime output (the int8-weight rewrite where
it is faster, as the engine runs it) on the same plan, so sample-aligned: log-mel distance
and what pocketsphinx hears; then the engine preparing it in the background and switching
to it between segments. Cost: ~35 s a precision, plus NNCF's one-time quantisation (~30 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fastkokoro_wyoming.assets import load_engine
from fastkokoro_wyoming.config import DEFAULT_CACHE, RuntimeConfig
from fastkokoro_wyoming.engine import SynthesisRequest
from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder
from fastkokoro_wyoming.engine.model.windowed.graphs import derive
from fastkokoro_wyoming.engine.model.windowed.metrics import log_mel_distance_db
from fastkokoro_wyoming.engine.model.windowed.norm_stats import (
    calibration_ids,
    load_or_calibrate,
)
from fastkokoro_wyoming.engine.serving.acceleration import Acceleration, decide
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.support.engines import collect, engine_config
from tests.support.sentences import EVERYDAY
from tests.support.speech import transcribe, word_accuracy

pytest.importorskip("openvino")
pytestmark = pytest.mark.integration

ENGLISH = [  # test_windowed_decoder.py's set
    "Could you pass me the salt and pepper, please?",
    "The train to Boston leaves at twenty past seven from platform four.",
    "Wow, that was the loudest thunderstorm I have ever heard!",
    "My grandmother grows tomatoes, carrots, beans and sweet yellow peppers.",
    "Turn left at the bakery, then walk straight until you see the blue door.",
    "Thank you.",
    "Scientists believe the ancient forest once covered most of the northern valley.",
    "Please remember to lock the back door before you go to bed tonight.",
    "How many people are coming to the birthday party on Saturday?",
    "The quiet library was the perfect place to finish reading that long novel about "
    "sailors, storms and a lighthouse keeper who never left his island.",
]
ENGLISH += EVERYDAY  # bench/int8_quality.py's: one sentence's word flips weigh less on sixteen
MAX_MEAN_MEL_DB = 2.0  # OpenVINO vs today's windowed ORT, mean over the set
MAX_MEL_DB_ONE = 3.0  # any one sentence ("Thank you." is mostly quiet pads)
MAX_ACCURACY_LOSS = 0.01  # within 1 point of word accuracy, mean over the set


def _options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return opts


CALIBRATED = {"af_heart": "a", "am_michael": "a", "bf_emma": "b"}  # as the builder picks


@pytest.fixture(scope="module", params=["float", "int8"])
def decoders(request, kokoro_assets):
    """(today's ORT decoder, the OpenVINO one, af_heart's priors, its table) for the
    CPU's float precision, then NNCF's int8 trunk."""
    from fastkokoro_wyoming.engine.model.windowed.int8select import with_int8

    if request.param == "int8":
        pytest.importorskip("nncf")
    model, voices = kokoro_assets
    graphs = with_int8(derive(model, Path(DEFAULT_CACHE).expanduser()), "auto")
    plain = WindowedDecoder(graphs, _options(), ["CPUExecutionProvider"], fixed_shapes=False)
    tables = load_style_tables(voices)
    precision = "int8" if request.param == "int8" else "bf16"  # bf16 falls back to f32
    decision = decide("openvino", gpu=False, precision=precision)
    assert decision.precision is not None, decision.why

    def calibration():
        return [
            (ids, tables[name][len(ids) - 1 : len(ids)])
            for name, lang in CALIBRATED.items()
            for ids in calibration_ids(lang)
        ]

    acc = Acceleration("openvino", decision, streams=1, threads=1, calibration=calibration)
    fast = acc.prepare(plain, decision.precision)
    assert fast is not None, acc.meta
    table = tables["af_heart"]
    priors = load_or_calibrate(plain, "af_heart", table, "a")
    print(f"OpenVINO {acc.label}: {decision.why}; probe check {json.dumps(acc.meta)}")
    return plain, fast, priors, table


def test_openvino_windowed_matches_todays_windowed(decoders) -> None:
    plain, fast, priors, table = decoders
    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    mels, acc_plain, acc_fast, t_plain, t_fast = [], [], [], 0.0, 0.0
    for text in ENGLISH:
        ids = vocab.encode(g2p.phonemize(text, "a"))
        style = table[len(ids) - 1 : len(ids)]
        plan = plain.plan(ids, style, 1.0, priors.for_ids(len(ids)))
        t0 = time.process_time()
        ref = np.concatenate(list(plain.decode(plan)))
        t1 = time.process_time()
        test = np.concatenate(list(fast.decode(plan)))
        t_plain, t_fast = t_plain + t1 - t0, t_fast + time.process_time() - t1
        assert test.size == ref.size
        mel = log_mel_distance_db(ref, test)
        ap, af = (word_accuracy(text, transcribe(a)) for a in (ref, test))
        print(f"{len(ids):3d} ids OpenVINO mel {mel:.2f} dB acc {ap:.2f} -> {af:.2f}")
        assert mel < MAX_MEL_DB_ONE, text
        mels.append(mel)
        acc_plain.append(ap)
        acc_fast.append(af)
    print(
        f"OpenVINO mean mel {np.mean(mels):.2f} dB, accuracy {np.mean(acc_plain):.3f} -> "
        f"{np.mean(acc_fast):.3f}, windows CPU {t_plain:.2f} s -> {t_fast:.2f} s"
    )
    assert np.mean(mels) < MAX_MEAN_MEL_DB
    assert np.mean(acc_fast) >= np.mean(acc_plain) - MAX_ACCURACY_LOSS


def test_the_trunk_is_cut_once_and_cached(decoders) -> None:
    from fastkokoro_wyoming.engine.model.windowed.trunk import derive_trunk

    plain, fast, _, _ = decoders
    t0 = time.perf_counter()
    trunk = derive_trunk(plain.graphs)
    assert time.perf_counter() - t0 < 1.0  # from the cache
    assert trunk.trunk_inputs[0] == "xgen" and trunk.trunk_inputs[-1] == "har"
    assert fast.generator.lengths == plain.window_lengths
    assert fast.fixed_shapes and fast.front is plain.front  # the plan graphs are shared


async def test_the_engine_switches_to_openvino_between_segments(kokoro_assets) -> None:
    """Built with backend openvino, the engine serves on ORT at once and hands over to
    OpenVINO when its background preparation ends; both say the words."""
    from fastkokoro_wyoming.engine.model.windowed.ovtrunk import OpenVinoGenerator

    cfg = engine_config(*kokoro_assets, runtime=RuntimeConfig(backend="openvino"))
    earlier = set(_threads())  # threads of earlier tests in this process are not this engine's
    engine = await load_engine(cfg)
    try:
        text = "The quick brown fox jumps over the lazy dog."
        for _ in range(600):
            decoder = engine.windowed.decoder if engine.windowed is not None else None
            if decoder is not None and isinstance(decoder.generator, OpenVinoGenerator):
                break
            await asyncio.sleep(0.2)
        else:
            pytest.fail("the OpenVINO generator was not swapped in within 120 s")
        audio = await collect(engine.synthesize(engine.prepare(SynthesisRequest(text))))
        # OpenVINO's inference threads were made at the daemon's priority, not nice 19
        # (they keep their maker's: the compile ran in a nice-19 child process). The one
        # thread meant to run at nice 19 is the graph derivation's, "kokoro-background".
        base = os.getpriority(os.PRIO_PROCESS, 0)
        new = {t: v for t, v in _threads().items() if t not in earlier}
        derivation = "kokoro-background"[:15]  # Linux keeps 15 characters of a thread's name
        low = {t: v for t, v in new.items() if v[1] != base and v[0] != derivation}
        assert not low, low
        heard = await asyncio.to_thread(transcribe, audio)
        assert word_accuracy(text, heard) >= 0.85, heard
        assert not engine.windowed.preparing() or all(
            p["task"] != "Compiling the generator for OpenVINO" for p in engine.windowed.preparing()
        )
    finally:
        engine.close()


def _threads() -> dict[int, tuple[str, int]]:
    """Every thread of this process: its id, name (15 characters) and nice value
    (/proc/self/task/*/stat, field 19)."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            name = stat.split("(", 1)[1].rsplit(")", 1)[0]
            out[int(task.name)] = (name, int(stat.rsplit(")", 1)[1].split()[16]))
        except (OSError, IndexError, ValueError):  # a thread that just ended
            pass
    return out
