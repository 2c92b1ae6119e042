"""The SSML parser (engine/text/ssml.py) and say-as: each element, and every refusal
(malformed XML, DTDs, entity bombs, unknown elements and symbols) with its line and column.
Pure text: no model, no G2P (~0.1 s)."""

from __future__ import annotations

import pytest

from fastkokoro_wyoming.engine.errors import InvalidRequest
from fastkokoro_wyoming.engine.text.cleanup import Pause
from fastkokoro_wyoming.engine.text.languages import LanguageTable
from fastkokoro_wyoming.engine.text.say_as import say_as
from fastkokoro_wyoming.engine.text.ssml import (
    PhonemeWord,
    Span,
    SsmlError,
    ipa_to_kokoro,
    parse_ssml,
)
from fastkokoro_wyoming.engine.text.vocab import Vocab

VOCAB = Vocab.load()


def parse(doc: str, lang: str = "a", languages: LanguageTable | None = None):
    return parse_ssml(doc, lang=lang, languages=languages or LanguageTable(), vocab=VOCAB)


def text_of(pieces) -> str:
    """The spans' text, whitespace collapsed (what the engine's cleanup does)."""
    words = []
    for piece in pieces:
        if isinstance(piece, Span):
            words += [p if isinstance(p, str) else f"/{p.phonemes}/" for p in piece.parts]
    return " ".join(" ".join(words).split())


def refused(doc: str, lang: str = "a", **kw) -> str:
    with pytest.raises(SsmlError) as err:
        parse(doc, lang, **kw)
    assert isinstance(err.value, InvalidRequest)  # HTTP 400, Wyoming `error`
    assert (err.value.code, err.value.param, err.value.status) == ("invalid_ssml", "input", 400)
    return err.value.message


# --- elements --------------------------------------------------------------------------


def test_speak_with_namespace_declaration_and_lang():
    doc = (
        '<?xml version="1.0"?>\n<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis"'
        ' xml:lang="en-GB">Hello there.</speak>'
    )
    assert parse(doc) == (Span(("Hello there.",), "b"),)


def test_a_fragment_without_speak_is_read_as_its_content():
    assert text_of(parse('Hello <break time="1s"/> world')) == "Hello world"


def test_break_time_and_strength():
    pieces = parse(
        '<speak>a<break time="1.5s"/>b<break time="250ms"/>c<break strength="x-strong"/>'
        'd<break/>e<break strength="none"/>f</speak>'
    )
    pauses = [p.seconds for p in pieces if isinstance(p, Pause)]
    assert pauses == [1.5, 0.25, 1.2, 0.5]  # strength none: no pause at all
    assert text_of(pieces) == "a b c d ef"


def test_adjacent_breaks_add_up():
    pieces = parse('<speak>a<break time="1s"/><break time="500ms"/>b</speak>')
    assert [p for p in pieces if isinstance(p, Pause)] == [Pause(1.5)]


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ('time="soon"', "is not a duration"),
        ('time="90s"', "over the 60 s limit"),
        ('strength="loud"', "is not one of"),
    ],
)
def test_bad_break_is_refused_with_its_position(attrs, message):
    got = refused(f"<speak>\n  one <break {attrs}/></speak>")
    assert "line 2, column 7" in got and message in got


def test_sub_reads_its_alias():
    assert text_of(parse('<speak><sub alias="Home Assistant">HA</sub> is on.</speak>')) == (
        "Home Assistant is on."
    )
    assert "needs an alias" in refused("<speak><sub>HA</sub></speak>")


def test_p_and_s_end_spans():
    pieces = parse("<speak><p><s>One</s><s>Two</s></p><p>Three</p></speak>")
    assert [p.parts for p in pieces if isinstance(p, Span)] == [("One",), ("Two",), ("Three",)]


def test_phoneme_in_kokoro_symbols_is_kept_and_checked():
    doc = '<speak>Say <phoneme alphabet="x-kokoro" ph="kˈOkəɹO">Kokoro</phoneme>.</speak>'
    (span,) = parse(doc)
    assert span.parts == ("Say ", PhonemeWord("kˈOkəɹO", "Kokoro"), ".")


def test_phoneme_in_ipa_becomes_kokoro_symbols():
    (span,) = parse('<speak><phoneme alphabet="ipa" ph="ˈkoʊkəroʊ">Kokoro</phoneme></speak>')
    assert span.parts == (PhonemeWord("ˈkOkəɹO", "Kokoro"),)
    assert ipa_to_kokoro("haɪ ðeɪ t͡ʃɛk ɡoʊ", "a") == "hI ðA ʧɛk ɡO"
    assert ipa_to_kokoro("ˈpe.ɾo", "e") == "ˈpeɾo"  # syllable dots go; a Spanish r stays


def test_unknown_phoneme_symbol_is_named():
    got = refused('<speak>\n<phoneme alphabet="x-kokoro" ph="kˈO#ko">K</phoneme></speak>')
    assert "line 2, column 1" in got and "'#' (U+0023)" in got and "vocabulary" in got
    sampa = '<speak><phoneme alphabet="x-sampa" ph="a">a</phoneme></speak>'
    assert "alphabet 'x-sampa'" in refused(sampa)
    assert "needs a ph" in refused("<speak><phoneme>a</phoneme></speak>")


def test_say_as_characters_cardinal_ordinal_digits():
    doc = (
        '<speak><say-as interpret-as="characters">HVAC</say-as>, '
        '<say-as interpret-as="spell-out">ab1</say-as>, '
        '<say-as interpret-as="cardinal">1,234</say-as>, '
        '<say-as interpret-as="ordinal">21st</say-as>, '
        '<say-as interpret-as="digits">2024</say-as>.</speak>'
    )
    assert text_of(parse(doc)) == (
        "H V A. C , A. B 1 , one thousand, two hundred and thirty-four , twenty-first , 2 0 2 4 ."
    )


def test_say_as_date_time_telephone():
    assert say_as("3/5/2024", "date", "mdy", "a") == "March fifth, twenty twenty-four"
    assert say_as("5/3/2024", "date", "dmy", "a") == "the fifth of March, twenty twenty-four"
    assert say_as("2024-03-05", "date", None, "a") == "March fifth, twenty twenty-four"
    assert say_as("05.03.2024", "date", "dmy", "f") == "5 3 2024"
    assert say_as("2:30pm", "time", None, "a") == "2:30 pm"
    assert say_as("2:30pm", "time", None, "f") == "14:30"
    assert say_as("1430", "time", "hms24", "e") == "14:30"
    assert say_as("+1 (555) 010-0123", "telephone", None, "a") == "plus 1, 5 5 5, 0 1 0, 0 1 2 3"
    assert say_as("+33 1 23", "telephone", None, "f") == "3 3, 1, 2 3"
    assert say_as("21", "ordinal", None, "f") == "vingt et unième"
    assert say_as("21", "cardinal", None, "h") == "21"  # no num2words: the G2P reads digits


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ('<say-as interpret-as="cardinal">many</say-as>', "not a whole number"),
        ('<say-as interpret-as="date" format="mdy">13/1/2024</say-as>', "month 13"),
        ('<say-as interpret-as="date" format="qq">1/2</say-as>', "format 'qq'"),
        ('<say-as interpret-as="time">25:00</say-as>', "not a clock time"),
        ('<say-as interpret-as="telephone">--</say-as>', "no digits"),
        ('<say-as interpret-as="vxml:boolean">1</say-as>', "not supported"),
        ("<say-as>1</say-as>", "needs an interpret-as"),
    ],
)
def test_bad_say_as_is_refused_with_its_position(element, message):
    got = refused(f"<speak>It is {element}</speak>")
    assert "line 1, column 14" in got and message in got


def test_prosody_rate_keywords_percentages_numbers_and_nesting():
    doc = (
        '<speak>a<prosody rate="slow">b<prosody rate="50%">c</prosody></prosody>'
        '<prosody rate="+20%">d</prosody><prosody rate="1.5">e</prosody>'
        '<prosody pitch="high" volume="loud">f</prosody></speak>'
    )
    rates = [(p.parts[0], p.rate) for p in parse(doc) if isinstance(p, Span)]
    assert rates == [("a", 1.0), ("b", 0.8), ("c", 0.4), ("d", 1.2), ("e", 1.5), ("f", 1.0)]
    assert "prosody rate 'quick'" in refused('<speak><prosody rate="quick">a</prosody></speak>')
    assert "above zero" in refused('<speak><prosody rate="0%">a</prosody></speak>')


def test_lang_switches_the_span_language():
    doc = '<speak>Hello <lang xml:lang="fr-FR">bonjour</lang> <s xml:lang="es">hola</s></speak>'
    langs = [(p.parts[0].strip(), p.lang) for p in parse(doc) if isinstance(p, Span)]
    assert langs == [("Hello", "a"), ("bonjour", "f"), ("hola", "e")]


def test_unknown_or_uninstalled_lang_is_refused():
    assert "unknown language 'xx'" in refused('<speak><lang xml:lang="xx">a</lang></speak>')
    assert "needs an xml:lang" in refused("<speak><lang>a</lang></speak>")
    table = LanguageTable(installed=lambda name: name != "jieba")
    got = refused('<speak><lang xml:lang="zh">你好</lang></speak>', languages=table)
    assert "Mandarin Chinese is not installed (missing jieba)" in got


def test_voice_names_a_voice_for_its_content():
    (a, b) = parse('<speak>a <voice name="bf_emma">b</voice></speak>')
    assert (a.voice, b.voice) == (None, "bf_emma")
    assert "needs a name" in refused("<speak><voice>b</voice></speak>")


def test_emphasis_audio_and_mark_are_accepted_and_ignored():
    doc = (
        '<speak>I <emphasis level="strong">really</emphasis> mean it.<mark name="m1"/>'
        '<audio src="https://example.com/ding.wav">ding<desc>a bell</desc></audio></speak>'
    )
    assert text_of(parse(doc)) == "I really mean it.ding"  # audio: its fallback text only


def test_entities_and_cdata_are_text():
    assert text_of(parse("<speak>Tom &amp; Jerry &#x263A; <![CDATA[a < b]]></speak>")) == (
        "Tom & Jerry ☺ a < b"
    )


# --- malformed and hostile documents -----------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "where", "what"),
    [
        ("<speak>a <b></speak>", "line 1, column 15", "mismatched tag"),
        ("<speak>\n  <p>one\n</speak>", "line 3, column 3", "mismatched tag"),
        ("<speak>a & b</speak>", "line 1, column 11", "not well-formed"),
        ("<speak>one", "line 1, column 11", "no element found"),
        ("<speak>a</speak><speak>b</speak>", "line 1, column 17", "junk after document"),
        ("<speak>\n\n  <foo>x</foo></speak>", "line 3, column 3", "<foo> is not supported"),
    ],
)
def test_malformed_ssml_names_line_and_column(doc, where, what):
    got = refused(doc)
    assert got.startswith("Malformed SSML at ") and where in got and what in got


def test_a_fragment_reports_columns_of_what_was_sent():
    assert "line 1, column 4" in refused("a & b")  # as in "<speak>a & b</speak>": 11


def test_an_entity_bomb_is_refused_not_expanded():
    lol = (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
        + "".join(
            f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'
            for i in range(1, 10)
        )
        + "]>\n<speak>&lol9;</speak>"
    )
    got = refused(lol)
    assert "a DTD (<!DOCTYPE ...>) is not allowed" in got and "line 2" in got


def test_external_entities_and_dtds_are_refused():
    xxe = '<!DOCTYPE speak [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><speak>&xxe;</speak>'
    assert "DTD" in refused(xxe)
    assert "DTD" in refused('<!DOCTYPE speak SYSTEM "http://example.com/s.dtd"><speak>a</speak>')
    # without a DTD no entity can be declared: a reference to one is just undefined
    assert "undefined entity" in refused("<speak>&xxe;</speak>")


def test_nesting_is_bounded():
    doc = "<speak>" + "<emphasis>" * 40 + "deep" + "</emphasis>" * 40 + "</speak>"
    assert "nest deeper than 32" in refused(doc)
