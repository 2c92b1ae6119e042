import pytest

from fastkokoro_wyoming.engine.text.segmentation import (
    STRATEGIES,
    segment,
    split_phrases,
    split_to_fit,
)

SENT = "ðə kwˈɪk bɹˈWn fˈɑks ʤˈʌmps ˈOvəɹ ðə lˈAzi dˈɔɡ, ænd ðˈɛn ɪt ɹˈæn əwˈA fɹʌm ðə fˈɑɹməɹ."


def squash(s: str) -> str:
    return s.replace(" ", "")


@pytest.mark.parametrize("limit", [5, 10, 17, 30, 200])
def test_split_to_fit_never_truncates(limit):
    pieces = split_to_fit(SENT, limit)
    assert all(len(p) <= limit for p in pieces)
    assert squash("".join(pieces)) == squash(SENT)


def test_prefers_phrase_then_word_boundaries():
    pieces = split_to_fit(SENT, 60)
    assert pieces[0].endswith("dˈɔɡ,")  # the comma, not a word in the middle
    assert all(not p.startswith(" ") for p in pieces)
    assert split_to_fit("a" * 25, 10) == ["a" * 10, "a" * 10, "a" * 5]  # only a giant word is cut


def test_phrases():
    assert split_phrases("a b, c d; e") == ["a b,", "c d;", "e"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_fits_and_keeps_everything(strategy):
    sentences = [SENT, "hˈɛlO.", SENT]
    segs = list(
        segment(sentences, strategy=strategy, capacity=40, first_tokens=10, chunk_tokens=60)
    )
    assert all(len(s) <= 40 for s in segs)
    assert squash("".join(segs)) == squash("".join(sentences))


def test_adaptive_starts_short_then_grows():
    segs = list(segment([SENT, SENT], strategy="adaptive", capacity=510, first_tokens=10))
    assert len(segs[0]) <= 10
    assert len(segs[1]) <= 20
    assert segs[-1] == SENT  # after the first sentence: sentence-sized


def test_sentence_strategy_one_segment_per_sentence():
    assert list(segment([SENT, "hˈɛlO."], strategy="sentence", capacity=510)) == [SENT, "hˈɛlO."]


def test_chunk_packs_sentences():
    segs = list(segment(["ab.", "cd.", "ef."], strategy="chunk", capacity=510, chunk_tokens=8))
    assert segs == ["ab. cd.", "ef."]


def test_adaptive_keeps_a_sentence_barely_over_the_budget_whole():
    short = "tˈɜɹn ˈɑn ðə kˈɪʧən lˈIts, plˈiz."  # 33 ids, budget 32: cutting gains nothing
    assert list(segment([short], strategy="adaptive", capacity=510, first_tokens=32)) == [short]


def test_sentence_ends_are_told_from_cuts():
    from fastkokoro_wyoming.engine.text.segmentation import ends_sentence

    assert ends_sentence("hˈɛlO.") and ends_sentence("wˈʌt?” ") and ends_sentence("你好。")
    assert not ends_sentence("dˈɔɡ,") and not ends_sentence("ðə kwˈɪk")
