"""Kokoro's phoneme vocabulary: phoneme strings -> model ids."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


class Vocab:
    """Maps phoneme characters to ids. Characters the model lacks are dropped, never guessed."""

    def __init__(self, table: dict[str, int]) -> None:
        self.table = table

    @classmethod
    def load(cls, path: Path | None = None) -> Vocab:
        """Kokoro's own table (shipped in the package) unless a file is given."""
        if path is None:
            raw = (
                resources.files(__name__.rpartition(".")[0])
                .joinpath("data/vocab.json")
                .read_text("utf-8")
            )
        else:
            raw = Path(path).read_text("utf-8")
        data = json.loads(raw)
        return cls(data.get("vocab", data))

    def encode(self, phonemes: str) -> list[int]:
        table = self.table
        return [table[c] for c in phonemes if c in table]

    def keep(self, phonemes: str) -> str:
        """The phoneme string with unknown characters removed (so lengths match ids)."""
        return "".join(c for c in phonemes if c in self.table)
