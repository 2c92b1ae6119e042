"""The int8-weight convolutions against today's windowed output: quality and speed.

For varied English sentences (none from the other benchmarks), af_heart with its default
priors, the engine's window schedule: log-mel distance of the int8 windowed audio from
today's windowed audio, pocketsphinx word accuracy of both, DNSMOS OVRL of both (when
``--dnsmos PYTHON`` names an interpreter with the ``speechmos`` package and librosa: it
is not a dependency), and per-graph process CPU time at 1 and 2 threads for 10- and
80-frame windows (+ 2 x 4 context), interleaved, median of repeats.

    uv run --extra cpu python bench/int8_quality.py [--dnsmos /path/to/python] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import assets

from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder
from fastkokoro_wyoming.engine.model.windowed.graphs import derive
from fastkokoro_wyoming.engine.model.windowed.int8select import with_int8
from fastkokoro_wyoming.engine.model.windowed.metrics import log_mel_distance_db
from fastkokoro_wyoming.engine.model.windowed.norm_stats import load_or_calibrate
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.support.sentences import EVERYDAY

SENTENCES = EVERYDAY
_DNSMOS = """
import json, sys
import numpy as np, soundfile as sf
from speechmos import dnsmos
out = {}
for p in sys.argv[1:]:
    x, sr = sf.read(p, dtype="float32")
    out[p] = dnsmos.run(np.clip(x, -1, 1), sr=sr)["ovrl_mos"]
print(json.dumps(out))
"""


def options(threads: int) -> ort.SessionOptions:
    o = ort.SessionOptions()
    o.intra_op_num_threads = threads
    o.inter_op_num_threads = 1
    o.enable_mem_pattern = False
    return o


def write_wav(path: Path, audio: np.ndarray) -> None:
    """16 kHz is what DNSMOS takes: resampled by linear interpolation (both alike)."""
    t = np.arange(0, audio.size / 24000, 1 / 16000)
    x = np.interp(t, np.arange(audio.size) / 24000, audio)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


def cpu_times(
    plain: WindowedDecoder, fast: WindowedDecoder, ids: list[int], plan, repeats: int
) -> list[str]:
    rows = []
    for threads in (1, 2):
        a = WindowedDecoder(plain.graphs, options(threads), fixed_shapes=False)
        b = WindowedDecoder(fast.graphs, options(threads), fixed_shapes=False)
        for core in (10, 80):
            lo = 4
            hi = min(plan.frames - 4, lo + core)
            ta, tb = [], []
            for dec, out in ((a, ta), (b, tb)) * repeats:
                t = time.process_time()
                dec.decode_window(plan, lo, hi)
                out.append(time.process_time() - t)
            ma, mb = np.median(ta[1:]), np.median(tb[1:])
            rows.append(
                f"| generator | {threads} | {hi - lo}+8 | {1e3 * ma:.0f} | {1e3 * mb:.0f} "
                f"| {ma / mb:.2f} |"
            )
        for name in ("front+fr+phase",):  # a segment's plan: the whole sentence
            ta, tb = [], []
            for dec, out in ((a, ta), (b, tb)) * repeats:
                t = time.process_time()
                dec.analyse(ids, plan.style, 1.0)
                out.append(time.process_time() - t)
            ma, mb = np.median(ta[1:]), np.median(tb[1:])
            rows.append(
                f"| {name} | {threads} | {plan.frames} | {1e3 * ma:.0f} | {1e3 * mb:.0f} "
                f"| {ma / mb:.2f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dnsmos", help="a Python with speechmos, librosa and soundfile")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from tests.support.speech import transcribe, word_accuracy

    model, voices = assets()
    cache = Path(tempfile.mkdtemp(prefix="fk-int8-"))
    t0 = time.perf_counter()
    graphs = derive(model, cache)
    t1 = time.perf_counter()
    fast_graphs = with_int8(graphs, "on")
    t2 = time.perf_counter()
    meta = json.loads((graphs.directory / "int8" / "meta.json").read_text())
    print(f"split derived in {t1 - t0:.1f} s, int8 variants in {t2 - t1:.1f} s: {meta}")
    plain = WindowedDecoder(graphs, options(2), fixed_shapes=False)
    fast = WindowedDecoder(fast_graphs, options(2), fixed_shapes=False)
    table = load_style_tables(voices)["af_heart"]
    priors = load_or_calibrate(plain, "af_heart", table, "a")
    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    rows, wavs = [], []
    for k, text in enumerate(SENTENCES):
        ids = vocab.encode(g2p.phonemize(text, "a"))
        style = table[len(ids) - 1 : len(ids)]
        stats = priors.for_ids(len(ids))
        a = np.concatenate(list(plain.decode(plain.plan(ids, style, 1.0, stats))))
        b = np.concatenate(list(fast.decode(fast.plan(ids, style, 1.0, stats))))
        for tag, audio in (("plain", a), ("int8", b)):
            write_wav(cache / f"{k}-{tag}.wav", audio)
            wavs.append(str(cache / f"{k}-{tag}.wav"))
        accs = (word_accuracy(text, transcribe(a)), word_accuracy(text, transcribe(b)))
        rows.append((len(ids), log_mel_distance_db(a, b), *accs))
        if k == len(SENTENCES) - 1:  # the longest: room for an 80-frame window
            plan = plain.plan(ids, style, 1.0, stats)
            timing = cpu_times(plain, fast, ids, plan, args.repeats)
    mos: dict[str, float] = {}
    if args.dnsmos:
        out = subprocess.run([args.dnsmos, "-c", _DNSMOS, *wavs], capture_output=True, text=True)
        mos = json.loads(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else {}
        if not mos:
            print(out.stderr[-2000:])
    print("\n| ids | log-mel int8 vs today dB | accuracy today | accuracy int8 |")
    print("|---|---|---|---|")
    for n, mel, ap, ai in rows:
        print(f"| {n} | {mel:.2f} | {ap:.2f} | {ai:.2f} |")
    means = np.mean([r[1:] for r in rows], axis=0)
    print(f"| mean | {means[0]:.2f} | {means[1]:.3f} | {means[2]:.3f} |")
    if mos:
        for tag in ("plain", "int8"):
            vals = [v for p, v in mos.items() if p.endswith(f"-{tag}.wav")]
            print(f"DNSMOS OVRL {tag}: {np.mean(vals):.3f} (mean of {len(vals)})")
    print("\n| graph | threads | frames | today ms CPU | int8 ms CPU | speed-up |")
    print("|---|---|---|---|---|---|")
    print("\n".join(timing))


if __name__ == "__main__":
    main()
