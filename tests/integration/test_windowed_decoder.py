"""The windowed decoder on the real int8 Kokoro model: derived graphs, priors, windows.

Windowed output is compared with the original model's whole call on the same segment
(same durations, so sample-aligned): log-mel distance, clicks at window joins, and what
pocketsphinx hears. The int8 model is not bit-stable (a 1e-6 input change costs it
0.7-0.9 dB log-mel), so spectra are compared, not samples. Thresholds come from
bench/results/windowed-quality.md with a margin for the other languages' smaller
calibration.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder
from fastkokoro_wyoming.engine.model.windowed.graphs import SAMPLES_PER_FRAME, derive
from fastkokoro_wyoming.engine.model.windowed.metrics import (
    join_jumps,
    log_mel_distance_db,
    spectral_snr_db,
)
from fastkokoro_wyoming.engine.model.windowed.norm_stats import (
    NormPriors,
    calibration_ids,
    load_or_calibrate,
    priors_path,
)
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.support.speech import transcribe, word_accuracy

pytestmark = pytest.mark.integration

# Ten varied English sentences (none from the benchmarks): questions, numbers read out,
# lists, exclamations, a long one and a very short one.
ENGLISH = [
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
# One sentence per other language, with a voice of that language.
OTHERS = {
    "e": ("ef_dora", "Mañana vamos a visitar a mis abuelos en el campo."),
    "f": ("ff_siwis", "Le petit chat dort tranquillement sur le canapé."),
    "h": ("hf_alpha", "कल हम अपने दोस्तों के साथ बाज़ार जाएंगे।"),
    "i": ("if_sara", "Questa sera mangiamo la pizza con i nostri vicini."),
    "p": ("pf_dora", "O cachorro brincou no jardim durante a tarde inteira."),
    "j": ("jf_alpha", "今日はとても良い天気なので散歩に行きましょう。"),
    "z": ("zf_xiaobei", "今天天气很好，我们一起去公园散步吧。"),
}

# Measured (bench/results/windowed-quality.md), af_heart, default priors: log-mel vs the
# whole call 1.9-3.0 dB (the int8 floor alone is 0.7-0.9, exact statistics 1.2-1.4);
# largest join jump well inside the largest jump within windows.
MAX_MEL_DB = 3.6  # any one English sentence of 16 phonemes or more
MAX_MEL_DB_SHORT = 5.5  # shorter: the log-mel is mostly the quiet pads (4.6 dB measured)
MAX_MEAN_MEL_DB = 3.0  # mean over the English set
MAX_MEL_DB_OTHER = 4.5  # other languages: 2 anchors x 2 texts of calibration only
MAX_ACCURACY_LOSS = 0.01  # "within 1 point": mean word accuracy, English set (0 measured)


@dataclass
class Kit:
    decoder: WindowedDecoder
    original: ort.InferenceSession
    tables: dict[str, np.ndarray]
    g2p: G2P
    vocab: Vocab
    cache: Path


def _options() -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    opts.enable_mem_pattern = False
    return opts


@pytest.fixture(scope="session")
def kit(kokoro_assets, tmp_path_factory) -> Kit:
    model, voices = kokoro_assets
    cache = tmp_path_factory.mktemp("windowed_cache")
    graphs = derive(model, cache)
    decoder = WindowedDecoder(graphs, _options(), ["CPUExecutionProvider"], fixed_shapes=False)
    original = ort.InferenceSession(str(model), _options(), providers=["CPUExecutionProvider"])
    return Kit(
        decoder, original, load_style_tables(voices), G2P(LanguageTable()), Vocab.load(), cache
    )


@pytest.fixture(scope="session")
def heart_priors(kit) -> NormPriors:
    """af_heart with the default calibration (what the engine would build)."""
    return load_or_calibrate(kit.decoder, "af_heart", kit.tables["af_heart"], "a")


def _whole(kit: Kit, ids: list[int], style: np.ndarray) -> np.ndarray:
    feed = {
        "tokens": np.asarray([[0, *ids, 0]], np.int64),
        "style": style,
        "speed": np.ones(1, np.float32),
    }
    return np.asarray(kit.original.run(None, feed)[0], np.float32).reshape(-1)


def _windowed(kit: Kit, ids: list[int], style: np.ndarray, stats) -> tuple[np.ndarray, list[int]]:
    plan = kit.decoder.plan(ids, style, 1.0, stats)
    bounds = kit.decoder.window_bounds(plan.frames)
    parts = [kit.decoder.decode_window(plan, lo, hi) for lo, hi in bounds]
    assert [p.size for p in parts] == [SAMPLES_PER_FRAME * (hi - lo) for lo, hi in bounds]
    return np.concatenate(parts), [SAMPLES_PER_FRAME * lo for lo, _ in bounds[1:]]


def test_derived_graphs_reproduce_the_model_and_are_cached(kit, kokoro_assets):
    g = kit.decoder.graphs
    assert g.verify["snr_db"] >= 40 and g.norm_count == 44
    assert all((g.directory / f"{n}.onnx").is_file() for n in ("front", "fr", "phase"))
    t0 = time.perf_counter()
    again = derive(kokoro_assets[0], kit.cache)
    assert again.directory == g.directory and time.perf_counter() - t0 < 2.0
    # a sentence the derive-time check did not see: exact statistics, one window
    ids = kit.vocab.encode(kit.g2p.phonemize(ENGLISH[1], "a"))
    style = kit.tables["af_heart"][len(ids) - 1 : len(ids)]
    plan = kit.decoder.plan(ids, style, 1.0, None)
    whole = _whole(kit, ids, style)
    assert int(plan.durations.sum()) == plan.frames and whole.size == plan.samples
    pieces = kit.decoder.decode_whole(plan)
    assert spectral_snr_db(whole, pieces) >= 40


def test_fixed_shape_windows_are_sample_aligned(kit, heart_priors):
    ids = kit.vocab.encode(kit.g2p.phonemize(ENGLISH[0], "a"))
    style = kit.tables["af_heart"][len(ids) - 1 : len(ids)]
    dec = WindowedDecoder(kit.decoder.graphs, _options(), fixed_shapes=True, max_frames=20)
    plan = dec.plan(ids, style, 1.0, heart_priors.for_ids(len(ids)))
    lengths = set(dec.window_lengths)
    for lo, hi in dec.window_bounds(plan.frames):
        a, b, pad = dec.span(plan.frames, lo, hi)
        assert a <= max(lo - dec.context, 0) and b >= min(hi + dec.context, plan.frames)
        assert (b - a + pad) in lengths or plan.frames < min(lengths)
    fixed = np.concatenate(list(dec.decode(plan)))
    assert fixed.size == plan.samples
    free, _ = _windowed(kit, ids, style, heart_priors.for_ids(len(ids)))
    assert log_mel_distance_db(free, fixed) < 2.0  # more context: the int8 floor, not more


def test_english_windowed_matches_the_whole_call(kit, heart_priors):
    table = kit.tables["af_heart"]
    mels, acc_whole, acc_win = [], [], []
    for text in ENGLISH:
        ids = kit.vocab.encode(kit.g2p.phonemize(text, "a"))
        style = table[len(ids) - 1 : len(ids)]
        whole = _whole(kit, ids, style)
        windowed, joins = _windowed(kit, ids, style, heart_priors.for_ids(len(ids)))
        assert windowed.size == whole.size
        mel = log_mel_distance_db(whole, windowed)
        join, inside = join_jumps(windowed, joins)
        _, whole_inside = join_jumps(whole, joins)
        aw = word_accuracy(text, transcribe(whole))
        ax = word_accuracy(text, transcribe(windowed))
        print(
            f"{len(ids):3d} ids mel {mel:.2f} dB join {join:.3f}/{inside:.3f} acc {aw:.2f}/{ax:.2f}"
        )
        assert mel < (MAX_MEL_DB if len(ids) >= 16 else MAX_MEL_DB_SHORT), text
        assert join <= max(inside, whole_inside), text  # no click larger than the speech's own
        mels.append(mel)
        acc_whole.append(aw)
        acc_win.append(ax)
    aw, ax = np.mean(acc_whole), np.mean(acc_win)
    print(f"mean mel {np.mean(mels):.2f} dB, accuracy {aw:.3f} -> {ax:.3f}")
    assert np.mean(mels) < MAX_MEAN_MEL_DB
    assert np.mean(acc_win) >= np.mean(acc_whole) - MAX_ACCURACY_LOSS


@pytest.mark.parametrize("lang", list(OTHERS))
def test_other_languages_windowed_match_the_whole_call(kit, lang):
    voice, text = OTHERS[lang]
    try:
        ids = kit.vocab.encode(kit.g2p.phonemize(text, lang))
    except Exception as err:  # noqa: BLE001 - an extra (zh/ja) not installed
        pytest.skip(f"G2P for {lang} unavailable: {err}")
    table = kit.tables[voice]
    row = len(ids) - 1
    # calibrating only this row keeps the test fast; the engine uses the default anchors
    anchors = (row,)
    priors = load_or_calibrate(
        kit.decoder, voice, table, lang, anchors=anchors, texts=calibration_ids(lang, 2)
    )
    style = table[row : row + 1]
    whole = _whole(kit, ids, style)
    windowed, joins = _windowed(kit, ids, style, priors.for_ids(len(ids)))
    mel = log_mel_distance_db(whole, windowed)
    join, inside = join_jumps(windowed, joins)
    _, whole_inside = join_jumps(whole, joins)
    print(f"{lang} {voice}: {len(ids)} ids mel {mel:.2f} dB join {join:.3f} inside {inside:.3f}")
    assert windowed.size == whole.size
    assert mel < MAX_MEL_DB_OTHER
    assert join <= max(inside, whole_inside)


def test_priors_are_cached_and_blends_average(kit, heart_priors):
    texts = calibration_ids("a", 3)
    from fastkokoro_wyoming.engine.model.windowed.norm_stats import DEFAULT_ANCHORS

    path = priors_path(kit.decoder, "af_heart", kit.tables["af_heart"], texts, DEFAULT_ANCHORS)
    assert path.is_file() and path.parent.parent == kit.decoder.graphs.directory
    t0 = time.perf_counter()
    again = load_or_calibrate(kit.decoder, "af_heart", kit.tables["af_heart"], "a")
    assert time.perf_counter() - t0 < 1.0
    np.testing.assert_array_equal(again.mean, heart_priors.mean)
    half = NormPriors.blend([(heart_priors, 1.0), (again, 1.0)], "x")
    np.testing.assert_allclose(half.var, heart_priors.var, rtol=1e-6)


# --------------------------------------------------------------------- int8 convolutions
# int8select.py: the int8-weight rewrite of front / fr / generator against today's graphs.
# Measured on this model: 0.41 dB log-mel on the probe; windowed, per sentence up to 1.0 dB.
# The int8 model's own floor (today's graphs, a 1e-6 input change) is 0.6-0.9 dB: the
# rewrite's rounding differences flip dynamic-quantisation steps the same way.
MAX_INT8_MEL_DB = 1.0  # mean over the English set, int8 windowed vs today's windowed
MAX_INT8_MEL_DB_ONE = 1.5  # any one sentence


@pytest.fixture(scope="session")
def int8_decoder(kit) -> WindowedDecoder:
    from fastkokoro_wyoming.engine.model.windowed.int8select import with_int8

    graphs = with_int8(kit.decoder.graphs, "on")  # used whatever the timing says
    assert graphs.rewritten == ("front", "fr", "generator")
    return WindowedDecoder(graphs, _options(), ["CPUExecutionProvider"], fixed_shapes=False)


def test_int8_variants_are_checked_cached_and_optional(kit, int8_decoder):
    from fastkokoro_wyoming.engine.model.windowed.int8select import with_int8

    meta = json.loads((kit.decoder.graphs.directory / "int8" / "meta.json").read_text())
    assert meta["passed"] and meta["mel_db"] <= MAX_INT8_MEL_DB
    assert meta["rewritten"]["generator"] == 50 and meta["rewritten"]["adain_snake"] >= 44
    assert set(meta["speedup"]) == {"front", "fr", "generator"}
    assert int8_decoder.graphs.path("generator").parent.name == "int8"
    assert int8_decoder.graphs.path("stats") == kit.decoder.graphs.path("stats")
    t0 = time.perf_counter()
    assert with_int8(kit.decoder.graphs, "on").rewritten == int8_decoder.graphs.rewritten
    assert time.perf_counter() - t0 < 2.0  # from the cache: no rewrite, no timing
    assert with_int8(kit.decoder.graphs, "off").rewritten == ()


def test_int8_windowed_matches_todays_windowed(kit, int8_decoder, heart_priors):
    table = kit.tables["af_heart"]
    mels, acc_plain, acc_int8 = [], [], []
    for text in ENGLISH:
        ids = kit.vocab.encode(kit.g2p.phonemize(text, "a"))
        style = table[len(ids) - 1 : len(ids)]
        stats = heart_priors.for_ids(len(ids))
        plain, _ = _windowed(kit, ids, style, stats)
        plan = int8_decoder.plan(ids, style, 1.0, stats)
        fast = np.concatenate(list(int8_decoder.decode(plan)))
        assert fast.size == plain.size  # the front's integer path is bit-exact: same durations
        mel = log_mel_distance_db(plain, fast)
        ap, ai = (word_accuracy(text, transcribe(a)) for a in (plain, fast))
        print(f"{len(ids):3d} ids int8 mel {mel:.2f} dB acc {ap:.2f} -> {ai:.2f}")
        assert mel < MAX_INT8_MEL_DB_ONE, text
        mels.append(mel)
        acc_plain.append(ap)
        acc_int8.append(ai)
    print(
        f"int8 mean mel {np.mean(mels):.2f} dB, accuracy {np.mean(acc_plain):.3f} -> "
        f"{np.mean(acc_int8):.3f}"
    )
    assert np.mean(mels) < MAX_INT8_MEL_DB
    assert np.mean(acc_int8) >= np.mean(acc_plain) - MAX_ACCURACY_LOSS
