"""SSML past the parser: the streaming splitter, how spans become segments (voice, speed,
phoneme words, pauses), and the flags of both front ends. No model: an engine built from
its parts with random voices, and a G2P that spells (tests/support/tiny_engine.py); ~1 s,
most of it the loopback Wyoming server."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
import pytest
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from fastkokoro_wyoming.config import EngineConfig
from fastkokoro_wyoming.engine.engine import Engine
from fastkokoro_wyoming.engine.errors import InvalidPhonemes
from fastkokoro_wyoming.engine.serving.passages import Passage
from fastkokoro_wyoming.engine.serving.plan import Segment
from fastkokoro_wyoming.engine.text.cleanup import Pause
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.ssml import SsmlError, parse_ssml
from fastkokoro_wyoming.engine.text.ssml_sentences import SsmlSentenceSplitter
from fastkokoro_wyoming.engine.text.vocab import Vocab
from fastkokoro_wyoming.engine.types import SynthesisRequest
from fastkokoro_wyoming.http_api.errors import ApiError
from fastkokoro_wyoming.http_api.params import merge_voice_map, parse_speech_body
from fastkokoro_wyoming.wyoming_api.service import start_wyoming_server
from fastkokoro_wyoming.wyoming_api.ssml_stream import is_ssml
from tests.support.fakes import FakeEngine, wyoming_settings
from tests.support.tiny_engine import SpellingG2P, voice_store

VOICES = ("af_heart", "bf_emma", "ff_siwis", "ef_dora")


def make_engine() -> tuple[Engine, SpellingG2P]:
    table = LanguageTable()
    g2p = SpellingG2P(table)
    session = SimpleNamespace(provider="cpu", contract=SimpleNamespace(capacity=510))
    engine = Engine(
        EngineConfig(),
        voices=voice_store(table, VOICES),
        vocab=Vocab.load(),
        g2p=g2p,
        session=session,  # type: ignore[arg-type]
        scheduler=None,  # type: ignore[arg-type]  # nothing here runs the model
        languages=table,
    )
    return engine, g2p


def plan(doc: str, **kw: object) -> list[Segment | np.ndarray]:
    engine, _ = make_engine()
    prep = engine.prepare(SynthesisRequest(doc, ssml=True, **kw))  # type: ignore[arg-type]
    return list(engine.planner.plan(prep, words=True))


# --- spans -> segments ------------------------------------------------------------------


def test_break_is_silence_between_segments():
    out = plan('<speak>One. <break time="1.5s"/> Two.</speak>')
    assert [type(x).__name__ for x in out] == ["Segment", "ndarray", "Segment"]
    assert out[1].size == 36_000  # 1.5 s at 24 kHz


def test_phoneme_word_joins_its_sentence_and_keeps_its_written_word():
    (seg,) = plan('<speak>Call <phoneme ph="ˈkoʊkəɹoʊ">Kokoro</phoneme> now.</speak>')
    assert isinstance(seg, Segment)
    assert seg.phonemes == "call ˈkOkəɹO now."
    assert [w.text for w in seg.words] == ["Call", "Kokoro", "now"]


def test_punctuation_after_a_phoneme_word_ends_the_sentence():
    out = plan('<speak><phoneme ph="hˈI" alphabet="x-kokoro">hi</phoneme>. Then more.</speak>')
    assert [s.phonemes for s in out if isinstance(s, Segment)] == ["hˈI.", "then more."]


def test_prosody_rate_sets_the_segment_speed_times_the_request():
    out = plan('<speak>Fast <prosody rate="50%">slow words</prosody>.</speak>', speed=1.2)
    speeds = [(s.phonemes, s.speed) for s in out if isinstance(s, Segment)]
    assert speeds == [("fast", None), ("slow words", pytest.approx(0.6))]  # "." alone: nothing


def test_extreme_rates_are_clamped_to_what_kokoro_renders():
    out = plan('<speak><prosody rate="x-fast"><prosody rate="4">zoom</prosody></prosody></speak>')
    assert [s.speed for s in out if isinstance(s, Segment)] == [4.0]


def test_lang_switches_g2p_and_to_that_languages_default_voice():
    engine, g2p = make_engine()
    doc = (
        '<speak>Hello <lang xml:lang="fr-FR">bonjour</lang> and '
        '<lang xml:lang="en-GB">hi</lang></speak>'
    )
    prep = engine.prepare(SynthesisRequest(doc, ssml=True))
    segs = [s for s in engine.planner.plan(prep) if isinstance(s, Segment)]
    assert [(s.phonemes, s.voice.name if s.voice else None) for s in segs] == [
        ("hello", None),
        ("bonjour", "ff_siwis"),  # the voice speaks English: French gets French's default
        ("and", None),
        ("hi", None),  # American and British voices read each other natively
    ]
    assert [code for _, code in g2p.calls] == ["a", "f", "a", "b"]


def test_voice_element_and_unknown_voice():
    (seg,) = plan('<speak><voice name="bf_emma">cheerio</voice></speak>')
    assert isinstance(seg, Segment) and seg.voice is not None and seg.voice.name == "bf_emma"
    with pytest.raises(Exception, match="nobody"):
        plan('<speak><voice name="nobody">x</voice></speak>')


def test_plain_text_requests_are_untouched_by_ssml():
    engine, _ = make_engine()
    prep = engine.prepare(SynthesisRequest("<b>Bold</b> [pause:1s] text."))
    assert prep.pieces == ("Bold", Pause(1.0), "text.")
    ssml = engine.prepare(SynthesisRequest("<speak>Bold</speak>", ssml=True))
    assert isinstance(ssml.pieces[0], Passage)


def test_malformed_ssml_is_refused_by_prepare_and_empty_ssml_is_empty():
    engine, _ = make_engine()
    with pytest.raises(SsmlError, match="line 1, column 15"):
        engine.prepare(SynthesisRequest("<speak>a <b></speak>", ssml=True))
    with pytest.raises(Exception, match="no speakable text"):
        engine.prepare(SynthesisRequest("<speak> <mark name='x'/> </speak>", ssml=True))


def test_inline_phonemes_in_ssml_text_are_checked_like_plain_text():
    """``[word](/phonemes/)`` in an SSML document's text is read as in plain text, so a
    symbol the model lacks is refused naming it, not dropped from the audio."""
    engine, _ = make_engine()
    ok = engine.prepare(SynthesisRequest("<speak>Say [Kokoro](/kˈOkəɹO/).</speak>", ssml=True))
    assert "[Kokoro](/kˈOkəɹO/)" in ok.pieces[0].parts[0]  # type: ignore[union-attr]
    with pytest.raises(InvalidPhonemes, match=r"'Kokoro' contain '9' \(U\+0039"):
        engine.prepare(
            SynthesisRequest("<speak><s>Say [Kokoro](/kˈOkəɹO9/).</s></speak>", ssml=True)
        )


# --- streaming: chunks -> one document per sentence -------------------------------------

STREAM = (
    '<speak xml:lang="en-US"><prosody rate="slow">Hello there. <sub alias="Doctor">Dr.</sub> '
    "Smith is in.</prosody> <s>One</s><s>Two</s> It is "
    '<say-as interpret-as="date" format="mdy">3/5/2024</say-as>. Bye <break time="1s"/> now.'
    "</speak>"
)


def split_stream(doc: str, size: int) -> list[str]:
    splitter = SsmlSentenceSplitter("a")
    out: list[str] = []
    for i in range(0, len(doc), size):
        out += splitter.add(doc[i : i + size])
    rest = splitter.finish()
    return out + ([rest] if rest else [])


@pytest.mark.parametrize("size", [1, 3, 7, 50, 10_000])
def test_stream_splitter_gives_whole_documents_however_it_is_chunked(size):
    pieces = split_stream(STREAM, size)
    assert pieces == split_stream(STREAM, 10_000)  # chunking never changes the cuts
    assert len(pieces) == 5
    table, vocab = LanguageTable(), Vocab.load()
    parsed = [parse_ssml(p, lang="a", languages=table, vocab=vocab) for p in pieces]
    assert parsed[0][0].rate == 0.8  # type: ignore[union-attr]  # prosody re-opened
    assert "Doctor Smith" in str(parsed[1]) and parsed[1][0].rate == 0.8  # type: ignore[union-attr]
    first = '<speak xml:lang="en-US"><prosody rate="slow">Hello there.</prosody></speak>'
    assert pieces[0] == first


def test_stream_splitter_never_cuts_inside_a_tag_or_an_atomic_element():
    splitter = SsmlSentenceSplitter("a")
    assert splitter.add('<speak>Hi. <sub alias="Mister. Big') == []  # an open tag: wait
    assert splitter.add('">Mr. B</sub> came. Then') == [
        "<speak>Hi.</speak>",
        '<speak> <sub alias="Mister. Big">Mr. B</sub> came.</speak>',
    ]
    assert splitter.finish() == "<speak> Then"


def test_stream_splitter_hands_what_it_cannot_follow_to_the_parser():
    splitter = SsmlSentenceSplitter("a")
    bomb = '<!DOCTYPE x [<!ENTITY a "b">]><speak>One. Two. &a;</speak>'
    assert splitter.add(bomb) == []
    rest = splitter.finish()
    assert rest == bomb
    with pytest.raises(SsmlError, match="DTD"):
        parse_ssml(rest, lang="a", languages=LanguageTable(), vocab=Vocab.load())


# --- the front ends' flags --------------------------------------------------------------


def _body(**extra: object) -> SynthesisRequest:
    body = {"model": "kokoro", "input": "<speak>x</speak>", "voice": "af_heart", **extra}
    return parse_speech_body(body, "mp3", merge_voice_map(None)).request


def test_http_ssml_flags():
    assert not _body().ssml
    assert _body(ssml=True).ssml and _body(input_format="ssml").ssml
    assert not _body(input_format="text").ssml
    for bad, param in (({"ssml": "yes"}, "ssml"), ({"input_format": "xml"}, "input_format"),
                       ({"ssml": False, "input_format": "ssml"}, "input_format")):  # fmt: skip
        with pytest.raises(ApiError) as err:
            _body(**bad)
        assert (err.value.status, err.value.param) == (400, param)


def test_wyoming_text_format():
    assert is_ssml("ssml") and is_ssml("SSML") and not is_ssml("text") and not is_ssml(None)
    assert not is_ssml("markdown")  # another string: read as text


async def test_wyoming_requests_carry_the_ssml_flag():
    engine = FakeEngine()
    service = await start_wyoming_server(engine, wyoming_settings())  # type: ignore[arg-type]
    try:
        client = AsyncTcpClient("127.0.0.1", service.port)
        async with client:
            await client.write_event(Synthesize("<speak>One.</speak>", text_format="ssml").event())
            while (e := await asyncio.wait_for(client.read_event(), 5)) and e.type != "audio-stop":
                pass
        async with AsyncTcpClient("127.0.0.1", service.port) as client:
            await client.write_event(SynthesizeStart(text_format="ssml").event())
            for chunk in ("<speak><s>Hi", "</s><s>there</s>", "</speak>"):
                await client.write_event(SynthesizeChunk(chunk).event())
            await client.write_event(SynthesizeStop().event())
            while (e := await asyncio.wait_for(client.read_event(), 5)) and (
                e.type != "synthesize-stopped"
            ):
                pass
    finally:
        await service.stop()
    assert [(r.text, r.ssml) for r in engine.requests] == [
        ("<speak>One.</speak>", True),
        ("<speak><s>Hi</s></speak>", True),
        ("<speak><s></s><s>there</s></speak>", True),
    ]
