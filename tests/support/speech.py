"""Offline speech check: pocketsphinx transcribes audio; word accuracy against a reference."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

import av
import numpy as np


def to_16k(samples: np.ndarray, rate: int = 24000) -> bytes:
    """float32 mono at ``rate`` -> s16le mono 16 kHz, with PyAV's (libswresample) resampler."""
    frame = av.AudioFrame.from_ndarray(
        (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1),
        format="s16",
        layout="mono",
    )
    frame.sample_rate = rate
    rs = av.AudioResampler(format="s16", layout="mono", rate=16000)
    out = [f.to_ndarray().tobytes() for f in rs.resample(frame)]
    out += [f.to_ndarray().tobytes() for f in rs.resample(None)]
    return b"".join(out)


def transcribe(samples: np.ndarray, rate: int = 24000) -> str:
    from pocketsphinx import Decoder

    decoder = Decoder(samprate=16000, loglevel="FATAL")
    decoder.start_utt()
    decoder.process_raw(to_16k(samples, rate), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp else ""


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_accuracy(reference: str, hypothesis: str) -> float:
    """Share of reference words matched in order (1 - a WER-like measure, floored at 0)."""
    ref, hyp = words(reference), words(hypothesis)
    matched = sum(
        b.size for b in SequenceMatcher(a=ref, b=hyp, autojunk=False).get_matching_blocks()
    )
    return matched / max(len(ref), 1)
