"""Word timestamps without the model: text -> phoneme labels -> segment ids -> seconds."""

from __future__ import annotations

import numpy as np

from fastkokoro_wyoming.engine.serving.timing import (
    ONSET_LEAD_SAMPLES,
    Emitted,
    SegmentTiming,
    WordClock,
    approximate_durations,
)
from fastkokoro_wyoming.engine.text.words import (
    WordLabels,
    WordSpan,
    label_sentence,
    source_entries,
    written,
)


def entries(source: str, normalized: str) -> list[str]:
    return [text for text, _, _ in source_entries(source, normalized)]


def test_rewritten_words_keep_their_written_form() -> None:
    assert entries("at 10:30 today.", "at ten thirty today.") == ["at", "10:30", "today"]
    assert entries("at 10:30 pm, ok", "at ten thirty p m, ok") == ["at", "10:30 pm", "ok"]
    assert entries("ran 5 km fast", "ran 5 kilometers fast") == ["ran", "5", "km", "fast"]
    assert entries("e.g. cats", "for example cats") == ["e.g.", "cats"]
    assert entries("a — b", "a b") == ["a", "b"]  # a dropped symbol is no word


def test_written_drops_only_sentence_punctuation() -> None:
    assert written("dog.", last=True) == "dog"
    assert written("Dr.") == "Dr." and written("U.S.A.", last=True) == "U.S.A."
    assert written('"Hello,') == "Hello"


def test_misaki_tokens_label_their_phonemes() -> None:
    """ "$12.50" is one written word whose tokens ("$", "12.50") say five words."""
    tokens = [
        ("Pay", "pˈA", " "),
        ("$", "", ""),
        ("12.50", "twˈɛlv dˈɑləɹz", " "),
        ("now", "nˈW", ""),
        (".", ".", ""),
    ]
    phonemes = "".join(p + s for _, p, s in tokens)
    words = label_sentence("Pay $12.50 now.", "Pay $12.50 now.", phonemes, tokens)
    assert words.texts == ("Pay", "$12.50", "now")
    said = {
        i: "".join(c for c, lab in zip(phonemes, words.labels, strict=True) if lab == i)
        for i in range(3)
    }
    assert said == {0: "pˈA", 1: "twˈɛlvdˈɑləɹz", 2: "nˈW"}  # spaces and "." are no word


def test_space_separated_phonemes_map_one_to_one_or_not_at_all() -> None:
    words = label_sentence(
        "Hola, me llamo Juan.", "Hola, me llamo Juan.", "ˈola, me ʎˈamo xwˈan.", None
    )
    assert words.texts == ("Hola", "me", "llamo", "Juan")
    merged = label_sentence("今天很好。", "今天很好。", "ʨi→n xə↓n xau↓.", None)
    assert merged.texts == ("今天很好。",)  # no word boundaries: the sentence is one entry
    assert set(merged.labels) == {0, -1}


def test_labels_follow_words_across_a_segment_cut() -> None:
    labels = WordLabels(lambda c: True)
    sentence = label_sentence("one two three", "one two three", "wˈʌn tˈu θɹˈi", None)
    labels.add(sentence, "wˈʌn tˈu θɹˈi")
    first, second = labels.spans("wˈʌn tˈ"), labels.spans("u θɹˈi")
    assert first == (
        WordSpan(0, "one", 0, 3),
        WordSpan(1, "two", 5, 6, opens=True, closes=False),
    )
    assert second == (
        WordSpan(1, "two", 0, 0, opens=False, closes=True),
        WordSpan(2, "three", 2, 5),
    )


def test_durations_become_output_seconds() -> None:
    timing = SegmentTiming(np.array([10, 2, 3, 1, 4, 8]), 600, head_trim=1200)
    start, end = timing.bounds(WordSpan(0, "ab", 0, 1))
    assert (start, end) == (
        10 * 600 - 1200 - ONSET_LEAD_SAMPLES,
        15 * 600 - 1200 - ONSET_LEAD_SAMPLES,
    )


def test_clock_reports_words_with_the_chunk_that_finishes_them() -> None:
    """Pauses and gaps shift later words; times stay inside the segment's audio."""
    clock = WordClock(rate=1000)
    render_a, pause, render_b = object(), object(), object()
    timing = SegmentTiming(np.array([2, 1, 1, 2]), 1000, head_trim=0)
    shift = ONSET_LEAD_SAMPLES  # 1500 samples: 1.5 s at this toy rate
    words = (WordSpan(0, "x", 0, 0), WordSpan(1, "y", 1, 1))
    assert (
        clock.advance(Emitted(np.zeros(1000), render_a, 1000, words, timing, False)) == ()
    )  # x ends at 3000 - shift
    done = clock.advance(
        Emitted(np.zeros(2000), render_a, 1800, words, timing, True)
    )  # + 200 of gap
    assert [(w.word, w.start, w.end) for w in done] == [
        ("x", (2000 - shift) / 1000, (3000 - shift) / 1000),
        ("y", (3000 - shift) / 1000, min(4000 - shift, 2800) / 1000),
    ]
    assert clock.advance(Emitted(np.zeros(1000), pause, 1000)) == ()
    later = clock.advance(
        Emitted(np.zeros(3000), render_b, 3000, (WordSpan(2, "z", 0, 0),), timing, True)
    )
    assert [(w.word, w.start) for w in later] == [("z", (4000 + 2000 - shift) / 1000)]
    assert clock.finish() == ()


def test_approximate_durations_cover_the_audio() -> None:
    audio = np.zeros(6000, np.float32)
    audio[1200:4800] = 0.5
    durations = approximate_durations(4, audio, 600)
    assert durations.sum() == 10 and durations[0] == 2 and durations[-1] == 2
