"""Wyoming's ``text_format`` (wyoming 1.10): which requests carry SSML, and how a stream of
SSML chunks is cut into sentences.

Kept apart from handler.py so the handler only asks two questions: is this SSML, and
how is its stream cut into pieces. Parsing and every check stay in the engine
(``SynthesisRequest(ssml=True)``), the same as for HTTP; a malformed document is an
``EngineError``, which the handler already turns into an ``error`` event followed by the
end event Home Assistant waits for.
"""

from __future__ import annotations

from wyoming.tts import SynthesizeTextFormat

from ..engine.text.ssml_sentences import SsmlSentenceSplitter
from .pacing import Piece, TextPieces


def is_ssml(text_format: object) -> bool:
    """``text_format`` "ssml" (the enum or its string); anything else is read as text,
    as the protocol allows other strings."""
    value = text_format.value if isinstance(text_format, SynthesizeTextFormat) else text_format
    return isinstance(value, str) and value.strip().lower() == SynthesizeTextFormat.SSML.value


class SsmlStreamText:
    """A stream's SSML chunks -> one complete document per sentence (the splitter closes
    the elements open at a cut and reopens them in the next). No first-clause or stall
    cuts: a document is only spoken once its sentence is complete, as a cut inside an
    element (a ``sub``, a ``say-as``) would change what is said."""

    def __init__(self, lang: str | None) -> None:
        self._splitter = SsmlSentenceSplitter(lang)
        self.pending = ""

    def add(self, chunk: str) -> list[Piece]:
        sentences = self._splitter.add(chunk)
        self.pending = "" if sentences else self.pending + chunk
        return [Piece(s) for s in sentences]

    def flush(self) -> list[Piece]:
        return []

    def finish(self) -> Piece | None:
        rest = self._splitter.finish()
        self.pending = ""
        return Piece(rest) if rest and rest.strip() else None


def ssml_stream_text(lang: str | None) -> TextPieces:
    """The pieces of a ``text_format: "ssml"`` stream."""
    return SsmlStreamText(lang)
