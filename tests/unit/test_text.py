from fastkokoro_wyoming.engine.text.cleanup import (
    Pause,
    clean,
    has_speech,
    normalize_english,
    split_pauses,
)


def test_strict_pause_tokens_only():
    assert split_pauses("a [pause:0.5s] b [pause=1] c [pause:2s]") == [
        "a ",
        Pause(0.5),
        " b [pause=1] c ",
        Pause(2.0),
    ]
    assert split_pauses("[pause:1.5s]") == [Pause(1.5)]
    assert split_pauses("[pause:1.5 s] [Pause:1s] [pause:s]") == [
        "[pause:1.5 s] [Pause:1s] [pause:s]"
    ]
    assert split_pauses("[pause:999s]") == [Pause(60.0)]  # capped


def test_markdown_is_read_not_spelled():
    text = (
        "# Title\n\n**Bold** and _it_ and `code`, see [the docs](https://x.io/a).\n"
        "- item one\n> quote"
    )
    out = clean(text)
    for sym in "#*_`[]()>":
        assert sym not in out
    assert "Bold and it and code, see the docs." in out
    assert "item one" in out and "quote" in out


def test_control_bytes_and_emoji_dropped():
    assert clean("Hello\x00\x07 world 🎉🎉") == "Hello world"
    assert not has_speech(clean("🎉 🎂 \x00\x01 ***"))
    assert has_speech(clean("ok 🎉"))
    assert clean("25℃ and 77℉") == "25°C and 77°F"


def test_english_reading_rules():
    out = normalize_english("Visit https://www.example.com/path?q=1 or mail bob.smith@example.org")
    assert "example dot com" in out and "http" not in out and "/" not in out
    assert "bob dot smith at example dot org" in out
    assert normalize_english("at 10:00 and 7:05pm") == "at ten o'clock and seven oh five p m"
    assert normalize_english("13:45") == "thirteen forty-five"
    assert normalize_english("5km, 10 kg, 20°C") == "5 kilometers, 10 kilograms, 20 degrees Celsius"
    assert normalize_english("e.g. No. 5") == "for example number 5"
    assert normalize_english("2*3") == "2 times 3"
    assert normalize_english("snake_case") == "snake_case"
