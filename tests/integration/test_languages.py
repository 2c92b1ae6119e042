"""All nine Kokoro languages through the real engine, offline: phonemes, then audio.

Each language has a typical sentence with numbers in it. Its phonemes (what the
model gets, after text normalisation, G2P and the vocabulary filter) were reviewed
by hand and frozen here: numbers read as words in that language, nothing spelled
symbol by symbol, no stray symbols. Then the sentence is synthesised with one of the
language's voices (language taken from the voice), and the audio must have a
plausible length and no silence gap inside. English is also checked by ear
(pocketsphinx) for both accents.

Needs the ``zh`` and ``ja`` extras: ``uv run --extra cpu --extra zh --extra ja pytest``.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastkokoro_wyoming.engine import SynthesisRequest
from tests.support.engines import collect
from tests.support.speech import transcribe, word_accuracy

# (lang as a user might write it, voice, text, reviewed phonemes)
TYPICAL = {
    "a": (
        "en-US",
        "af_heart",
        "I have 3 apples and 25 oranges.",
        # I have three apples and twenty-five oranges
        "ˌI hæv θɹˈi ˈæpᵊlz ænd twˈɛnti fˈIv ˈɔɹᵊnʤᵻz.",
    ),
    "b": (
        "en_GB",
        "bf_emma",
        "My flat has 2 bedrooms and a lovely garden.",
        # two: tˈuː, non-rhotic garden: ɡˈɑːdᵊn
        "mˌI flˈat haz tˈuː bˈɛdɹuːmz and ɐ lˈʌvli ɡˈɑːdᵊn.",
    ),
    "j": (
        "ja_JP",
        "jf_alpha",
        "今日は2024年3月5日で、気温は25度です。",
        # kyō wa nisen-nijūyo nen sangatsu itsuka de, kion wa nijūgo do desu
        "kʲoː βa ɲiseɴ ɲiʥɨːjoɴ neɴ saŋɡaʦɨ iʦɨka de, kʲioɴ βa ɲiʥɨːɡo do desɨ.",
    ),
    "z": (
        "zh-CN",
        "zf_xiaobei",
        "今天是2024年3月5日，气温25度。",
        # jīntiān shì èr líng èr sì nián sān yuè wǔ rì, qìwēn èrshíwǔ dù
        "ʨi→ntʰjɛ→n ʂɨ↘ ɚ↘li↗ŋɚ↘ sɨ↘njɛ↗n sa→nɥe↘ u↓ɻɨ↘, ʨʰi↘wə→n ɚ↘ʂɨ↗u↓ tu↘.",
    ),
    "e": (
        "es-ES",
        "ef_dora",
        "El tren sale a las 8:30 y cuesta 25 euros.",
        # ... a las ocho y treinta y cuesta veinticinco euros
        "el tɾˈen sˈale a las ˈoʧo i tɾˈAnta i kwˈesta βˌAntiθˈinko ˈeʊɾos.",
    ),
    "f": (
        "fr_FR",
        "ff_siwis",
        "Le train part à 8 h 30 et coûte 25 euros.",
        # ... à huit heures trente et coûte vingt-cinq euros
        "lə tʁˈɛ̃ pˈaʁ a yˈit ˈœʁ tʁˈɑ̃t e kˈut vɛ̃tsˈɛ̃k øʁˈo.",
    ),
    "h": (
        "HI",
        "hf_alpha",
        "मेरे पास 25 रुपये और 3 किताबें हैं।",
        # mere pās paccīs rupaye aur tīn kitābẽ haĩ (danda read as a full stop)
        "mˌeːɾeː pˈaːs pˈʌcːis ɾˈʊpjˌeː ɔːɾ tˈiːn kɪtˈaːbe\u0303ː hɛ̃.",
    ),
    "i": (
        "it-it",
        "if_sara",
        "Il treno parte alle 8:30 e costa 25 euro.",
        # ... alle otto e trenta e costa venticinque euro
        "il trˈɛno pˈarte ˌalle ˈɔtːo e trˈeːnta e kˈɔsta ventiʧˈinkwe ˈɛʊro.",
    ),
    "p": (
        "Pt-BR",
        "pf_dora",
        "O trem sai às 8:30 e custa 25 reais.",
        # ... às oito horas e trinta e custa vinte e cinco reais
        "ʊ trˈAŋ sˈI aːs ˈoɪtw ˈɔɾæz i trˈiŋtæ i kˈustæ vˈiŋʧyisˈiŋkʊ xeˈIs.",
    ),
}

# Harder readings: grouping and decimal marks, currency symbols, minus, degrees, and
# Latin words inside Chinese or Japanese (read as English, not letter by letter).
HARD = [
    (
        "es",
        "Cuesta $1.250,50 y hace -5 °C.",
        # mil doscientos cincuenta coma cincuenta dólares ... menos cinco grados Celsius
        "kwˈesta mˈil ðosθjˈentos θinkwˈɛnta kˈoma θinkwˈɛnta ðˈolaɾes i ˈaθe mˈenos θˈinko "
        "ɣɾˈaðos θˈelsjus.",
    ),
    (
        "fr",
        "Il fait 3,5 °C, ça coûte 1 500 €.",
        # trois virgule cinq degrés Celsius ... mille cinq cents euros
        "il fˈɛ tʁwˈa viʁɡˈyl sˈɛ̃k dəɡʁˈe sɛlsjˈys, sa kˈut mˈil sɛ̃ksˈɑ̃ øʁˈo.",
    ),
    (
        "hi",
        "₹1,25,000 और 3.5 किलो।",
        # ek lākh paccīs hazār rupaye aur tīn daśamlav pā̃c kilo (Indian grouping)
        "ˈeːk lˈaːkʰ pˈʌcːis hˈʌɟaːɾ ɾˈʊpjˌeː ɔːɾ tˈiːn dˈʌʃəmˌələʋ pˈa\u0303c kˈɪloː.",
    ),
    (
        "it",
        "Sono 1.250.000 persone e 3,5 chili.",
        # un milione duecentocinquantamila ... tre virgola cinque
        "sˌono ʊnmiliˈone dʊeʧˈɛnto ʧinkwˈanta mˈiːla persˈone e trˈe vˈirɡola ʧˈinkwe kˈilɪ.",
    ),
    (
        "pt",
        "Custa R$ 1.500 e faz 3,5 °C.",
        # mil quinhentos reais ... três vírgula cinco graus Celsius
        "kˈustæ mˈiʊ kiɲˈAŋtʊz xeˈIz i fas trˈez vˈiɾəɡulæ sˈiŋkʊ ɡrˈWs sɛʊsˈiʊs.",
    ),
    (
        "zh",
        "这个要¥1,500，还有3.5公斤，50%。",
        # yīqiān wǔbǎi yuán, sān diǎn wǔ gōngjīn, bǎi fēn zhī wǔshí
        "ꭧɤ↘kɤ jau↘ i→ʨʰjɛ→nu↓pai↓ɥɛ↗n, xai↗jou↓ sa→ntjɛ↓n u↓kʊ→ŋʨi→n, pai↓fə→nꭧɨ→u↓ʂɨ↗.",
    ),
    (
        "ja",
        "これは¥1,500で、3.5キロ、50%です。",
        # sen gohyaku en, san ten go kiro, gojū pāsento
        "koɾe βa seɴ ɡoçakɯ eɴ de, saɴ teɴ ɡo kʲiɾo, ɡoʥɨː paːsento desɨ.",
    ),
    ("zh", "我用iPhone打电话。", "wo↓jʊ↘ŋ ˈI fˈOn ta↓tjɛ↘nxwa↘."),
    ("ja", "iPhoneで電話します。", "ˈI fˈOn de deɴβa ɕi masɨ."),
]

# pocketsphinx's small en-us model hears Kokoro well (1.0 measured on both sentences)
MIN_ACCURACY = 0.8
HEARD_AS = {
    "a": "i have three apples and twenty five oranges",
    "b": "my flat has two bedrooms and a lovely garden",
}


@pytest.mark.parametrize("code", list(TYPICAL))
def test_phonemes_of_a_typical_sentence(engine, code):
    lang, _voice, text, expected = TYPICAL[code]
    phonemes = engine.phonemize(text, lang)
    assert phonemes == expected
    assert set(phonemes) <= set(engine.vocab.table)
    assert not any(c.isdigit() for c in phonemes)


@pytest.mark.parametrize(
    "lang,text,expected", HARD, ids=[f"{h[0]}-{i}" for i, h in enumerate(HARD)]
)
def test_phonemes_of_harder_numbers_and_symbols(engine, lang, text, expected):
    assert engine.phonemize(text, lang) == expected


def longest_gap_s(audio: np.ndarray, frame_s: float = 0.05, floor: float = 0.01) -> float:
    """Longest run of quiet 50 ms frames between the first and last sound, in seconds.

    Quiet: RMS below ``floor`` times the loudest frame's RMS.
    """
    frame = int(24000 * frame_s)
    n = audio.size // frame
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms >= floor * rms.max())
    longest = run = 0
    for quiet in rms[loud[0] : loud[-1] + 1] < floor * rms.max():
        run = run + 1 if quiet else 0
        longest = max(longest, run)
    return longest * frame_s


@pytest.mark.parametrize("code", list(TYPICAL))
async def test_audio_of_a_typical_sentence(engine, code):
    _lang, voice, text, _ = TYPICAL[code]
    # no lang given: the engine takes it from the voice's prefix
    assert engine.prepare(SynthesisRequest(text, voice=voice)).lang == code
    audio = await collect(engine.synthesize(SynthesisRequest(text, voice=voice)))
    seconds = audio.size / 24000
    per_char = seconds / len(text)
    # a kanji or hanzi carries a syllable or two; an alphabet letter much less
    low, high = (0.1, 0.6) if code in "jz" else (0.04, 0.25)
    assert low < per_char < high, (seconds, per_char)
    assert np.abs(audio).max() > 0.1
    assert longest_gap_s(audio) < 0.8
    if code in HEARD_AS:
        heard = transcribe(audio)
        assert word_accuracy(HEARD_AS[code], heard) >= MIN_ACCURACY, heard
