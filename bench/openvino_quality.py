"""The OpenVINO trunk's quality and speed in each precision against today's windowed ORT.

On one plan per sentence (af_heart, its priors), sample-aligned: log-mel distance to
today's windowed ONNX Runtime output, pocketsphinx word accuracy, DNSMOS overall (a quality
estimate without references) and the windows' process CPU time, for OpenVINO bf16 (f32
where the CPU lacks it) and NNCF's int8 trunk (its other work in f32, as ``auto`` runs it,
and in bf16). test_openvino_generator.py's sixteen sentences.

    uv run --extra cpu --extra openvino-int8 python bench/openvino_quality.py \
        [--dnsmos PYTHON]   (an interpreter with speechmos, librosa, soundfile, onnxruntime)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import assets
from int8_quality import _DNSMOS, options, write_wav

from fastkokoro_wyoming.config import DEFAULT_CACHE
from fastkokoro_wyoming.engine.model.voices import load_style_tables
from fastkokoro_wyoming.engine.model.windowed.decoder import WindowedDecoder
from fastkokoro_wyoming.engine.model.windowed.graphs import derive
from fastkokoro_wyoming.engine.model.windowed.int8select import with_int8
from fastkokoro_wyoming.engine.model.windowed.metrics import log_mel_distance_db
from fastkokoro_wyoming.engine.model.windowed.norm_stats import calibration_ids, load_or_calibrate
from fastkokoro_wyoming.engine.serving.acceleration import Acceleration, Decision
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.integration.test_openvino_generator import CALIBRATED, ENGLISH
from tests.support.speech import transcribe, word_accuracy

VARIANTS = {  # name: (precision, hint)
    "OpenVINO bf16": ("bf16", None),
    "OpenVINO int8 (f32 elsewhere)": ("int8", "f32"),
    "OpenVINO int8 (bf16 elsewhere)": ("int8", "bf16"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dnsmos", help="a Python with speechmos, librosa and soundfile")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    model, voices = assets()
    graphs = with_int8(derive(model, Path(DEFAULT_CACHE).expanduser()), "auto")
    plain = WindowedDecoder(graphs, options(1), ["CPUExecutionProvider"], fixed_shapes=False)
    tables = load_style_tables(voices)
    priors = load_or_calibrate(plain, "af_heart", tables["af_heart"], "a")
    g2p, vocab = G2P(LanguageTable()), Vocab.load()
    texts = ENGLISH  # the test's sixteen (int8_quality's six among them)
    plans = []
    for text in texts:
        ids = vocab.encode(g2p.phonemize(text, "a"))
        style = tables["af_heart"][len(ids) - 1 : len(ids)]
        plans.append(plain.plan(ids, style, 1.0, priors.for_ids(len(ids))))

    def calibration():
        return [
            (ids, tables[n][len(ids) - 1 : len(ids)])
            for n, lang in CALIBRATED.items()
            for ids in calibration_ids(lang)
        ]

    decoders = {"ONNX Runtime (today)": plain}
    for name, (precision, hint) in VARIANTS.items():
        acc = Acceleration("openvino", Decision(precision, "bench", hint=hint), 1, 1, calibration)
        fast = acc.prepare(plain, precision)
        if fast is None:
            print(f"{name}: refused {json.dumps(acc.meta)}")
            continue
        decoders[name] = fast
        print(f"{name}: probe check {json.dumps(acc.meta)}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="fk-ovq-"))
    rows: dict[str, dict[str, list[float]]] = {
        n: {"mel": [], "acc": [], "cpu": []} for n in decoders
    }
    wavs: dict[str, list[str]] = {n: [] for n in decoders}
    for i, (text, plan) in enumerate(zip(texts, plans, strict=True)):
        ref = None
        for name, decoder in decoders.items():
            t0 = time.process_time()
            audio = np.concatenate(list(decoder.decode(plan)))
            rows[name]["cpu"].append(time.process_time() - t0)
            ref = audio if ref is None else ref
            rows[name]["mel"].append(float(log_mel_distance_db(ref, audio)))
            rows[name]["acc"].append(word_accuracy(text, transcribe(audio)))
            path = tmp / f"{len(wavs[name])}-{i}-{abs(hash(name))}.wav"
            write_wav(path, audio)
            wavs[name].append(str(path))
    mos: dict[str, float] = {}
    if args.dnsmos:
        every = [p for ps in wavs.values() for p in ps]
        out = subprocess.run([args.dnsmos, "-c", _DNSMOS, *every], capture_output=True, text=True)
        scores = json.loads(out.stdout) if out.returncode == 0 else {}
        if not scores:
            print(out.stderr[-2000:])
        mos = {n: float(np.mean([scores[p] for p in ps])) for n, ps in wavs.items() if scores}
    shutil.rmtree(tmp, ignore_errors=True)
    base = sum(rows["ONNX Runtime (today)"]["cpu"])
    print(f"\n{len(texts)} sentences, af_heart, one thread\n")
    print("| generator | log-mel dB mean (max) | word accuracy | DNSMOS | CPU s | speed ÷ ORT |")
    print("|---|---|---|---|---|---|")
    result = {}
    for name, r in rows.items():
        cpu = sum(r["cpu"])
        m = mos.get(name, float("nan"))
        print(
            f"| {name} | {np.mean(r['mel']):.2f} ({max(r['mel']):.2f}) | {np.mean(r['acc']):.3f}"
            f" | {m:.3f} | {cpu:.2f} | {base / cpu:.2f} |"
        )
        result[name] = {"mel": r["mel"], "accuracy": r["acc"], "cpu_s": cpu, "dnsmos": m}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
