"""Wyoming's ``text_format`` (wyoming 1.10): which requests carry SSML, and how a stream of
SSML chunks is cut into sentences.

Kept apart from handler.py so the handler only asks two questions: is this SSML, and
which splitter does its stream use. Parsing and every check stay in the engine
(``SynthesisRequest(ssml=True)``), the same as for HTTP; a malformed document is an
``EngineError``, which the handler already turns into an ``error`` event followed by the
end event Home Assistant waits for.
"""

from __future__ import annotations

from typing import Protocol

from wyoming.tts import SynthesizeTextFormat

from ..engine.text.sentences import SentenceSplitter
from ..engine.text.ssml_sentences import SsmlSentenceSplitter


class Splitter(Protocol):
    """What a stream needs from its sentence splitter (text or SSML)."""

    def add(self, chunk: str) -> list[str]: ...

    def finish(self) -> str: ...


def is_ssml(text_format: object) -> bool:
    """``text_format`` "ssml" (the enum or its string); anything else is read as text,
    as the protocol allows other strings."""
    value = text_format.value if isinstance(text_format, SynthesizeTextFormat) else text_format
    return isinstance(value, str) and value.strip().lower() == SynthesizeTextFormat.SSML.value


def stream_splitter(text_format: object, lang: str | None) -> Splitter:
    """A stream's splitter: sentences of text, or whole SSML documents of one sentence."""
    return SsmlSentenceSplitter(lang) if is_ssml(text_format) else SentenceSplitter(lang)
