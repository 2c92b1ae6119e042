"""A real :class:`Engine` on the tiny classic graph, for the front ends' unit tests.

Everything a request meets is the engine's own: the validation and default-voice rule
(engine/requests.py), the catalog, the planner, admission, the scheduler and the stream.
Only what would take seconds is small: the model (tests/support/tiny_models.py, each id
600 samples), the voices (random style tables under Kokoro names) and the G2P, which
spells (phonemes = the text lowercased: no spaCy, espeak or MeCab to load). So an error a
front end reports comes from the one validation path, with its real code and message,
and the fakes (tests/support/fakes.py) keep only what a test must control: timing and
failures. Building one takes milliseconds (no I/O but the graph, written to a temporary
folder and read once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from fastkokoro_wyoming.engine import Engine
from fastkokoro_wyoming.engine.model.runtime import KokoroSession, RuntimeSettings
from fastkokoro_wyoming.engine.model.voices import VoiceStore
from fastkokoro_wyoming.engine.serving.scheduler import Scheduler
from fastkokoro_wyoming.engine.settings import EngineConfig
from fastkokoro_wyoming.engine.text.g2p import G2P
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.vocab import Vocab
from tests.support.tiny_models import build_classic_model

# The catalog the front-end tests see: an American, a British and a Japanese voice.
VOICES = ("af_heart", "bf_emma", "jf_alpha")


class SpellingG2P(G2P):
    """The real G2P's interface and language table; phonemes = the text with its
    whitespace collapsed, lowercased (Latin letters are Kokoro phonemes). Records each
    ``(text, code)`` it is given."""

    def __init__(self, languages: LanguageTable) -> None:
        super().__init__(languages)
        self.table = languages
        self.calls: list[tuple[str, str]] = []

    def phonemize_tokens(
        self, text: str, code: str, *, normalize: bool = True
    ) -> tuple[str, str, list[tuple[str, str, str]] | None]:
        code = self.table.resolve(code).code  # an unknown language fails as in the real one
        self.calls.append((text, code))
        spelled = " ".join(text.split())
        return spelled, spelled.lower(), None


def voice_store(languages: LanguageTable, names: tuple[str, ...] = VOICES) -> VoiceStore:
    """Random (seeded) style tables under real voice names: the catalog, voice languages,
    blends and presets are VoiceStore's own."""
    rng = np.random.default_rng(0)
    return VoiceStore(
        {n: rng.standard_normal((510, 256)).astype(np.float32) for n in names}, languages
    )


def tiny_config(**changes: object) -> EngineConfig:
    """The shipped EngineConfig with ``changes`` (``default_voice``, ``limits`` ...)."""
    return dataclasses.replace(EngineConfig(), **changes)  # type: ignore[arg-type]


def open_tiny_engine(cfg: EngineConfig | None = None, voices: tuple[str, ...] = VOICES) -> Engine:
    """A real Engine on the tiny classic graph; the caller closes it (its scheduler's
    threads), or uses :func:`tiny_engine`."""
    cfg = cfg or EngineConfig()
    languages = LanguageTable()
    with tempfile.TemporaryDirectory(prefix="tiny-engine-") as tmp:
        model = build_classic_model(Path(tmp) / "tiny_classic.onnx")
        session = KokoroSession.open(model, RuntimeSettings(intra_op_threads=1))
    return Engine(
        cfg,
        voices=voice_store(languages, voices),
        vocab=Vocab.load(),
        g2p=SpellingG2P(languages),
        session=session,
        scheduler=Scheduler(1, cfg.limits.max_queue),
        languages=languages,
    )


@contextlib.contextmanager
def tiny_engine(
    cfg: EngineConfig | None = None, voices: tuple[str, ...] = VOICES
) -> Iterator[Engine]:
    """:func:`open_tiny_engine`, closed afterwards."""
    engine = open_tiny_engine(cfg, voices)
    try:
        yield engine
    finally:
        engine.close()
