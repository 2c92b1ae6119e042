"""Reading rules for the eight languages besides American English, before their G2P.

English has :func:`.text.normalize_english`; this module covers the rest. Each
function rewrites what the language's G2P would otherwise misread:

* espeak-ng (es, fr, hi, it, pt-br) reads plain integers in words itself, but not
  thousands separators (``1.250.000``), decimal commas (``3,5``), a leading minus,
  currency symbols before the number (``$5``, ``R$ 25``), ``8:30`` / ``8h30`` or ``°C``.
  Those become digits plus words espeak reads correctly in that language.
* Mandarin: misaki's ``zh`` runs ``cn2an`` (which reads digits, ``3.5``, ``%``) but
  not thousands separators, currency symbols, clock times or degrees.
* Japanese: misaki-ja-lightning reads each digit run on its own in hiragana
  (``3月`` came out "san tsuki", ``3.5`` "san. go", ten digits crashed it), so
  :func:`japanese_numbers` writes numbers as kanji numerals, which the dictionary
  reads with the right counter (三月 さんがつ, 五日 いつか, 三点五 さんてんご).

All functions are pure and cheap; they import nothing beyond the standard library.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# --- number tokens common to every language -------------------------------------------

# ASCII word characters: lookarounds use these, not \w, so 年/円/の next to a number
# (CJK text has no spaces) don't hide it.
_A = "0-9A-Za-z_"
# A number as written: digits, maybe with grouping/decimal separators between digits.
_NUMBER = re.compile(rf"(?<![{_A}.,])\d(?:[\d.,\u00a0\u202f]*\d)?")
_GROUP_SPACES = "\u00a0\u202f"  # no-break spaces as thousands separators (French)


def _split_number(token: str, decimal_comma: bool) -> tuple[str, str] | None:
    """``"1.250.000,5"`` -> ``("1250000", "5")``; None if it is no single number (``1.2.3``).

    Grouping: the separator that occurs last is the decimal one when both occur.
    A lone separator followed by exactly three digits is grouping when it is the
    language's grouping mark (``1.500`` in Spanish, ``1,500`` in Hindi), else decimal.
    """
    for sp in _GROUP_SPACES:
        token = token.replace(sp, "")
    seps = [c for c in token if c in ".,"]
    if not seps:
        return token, ""
    grouping_mark = "." if decimal_comma else ","
    if len(set(seps)) == 2:
        dec = seps[-1]
        if seps.count(dec) != 1:
            return None
        whole, frac = token.rsplit(dec, 1)
        group = "," if dec == "." else "."
        return (_ungroup(whole, group), frac) if _grouped(whole, group) else None
    mark = seps[0]
    if len(seps) > 1:  # 1.250.000 or 1,250,000 (or Indian 1,25,000)
        return (_ungroup(token, mark), "") if _grouped(token, mark) else None
    whole, frac = token.split(mark)
    if mark == grouping_mark and len(frac) == 3:
        return whole + frac, ""
    if mark == "," and not decimal_comma:
        return None  # "3,5" where the decimal mark is "." is no number we can read
    return whole, frac


def _grouped(whole: str, mark: str) -> bool:
    parts = whole.split(mark)
    if not (1 <= len(parts[0]) <= 3) or len(parts[-1]) != 3:
        return False
    # three-digit groups, or Indian lakh/crore grouping (1,25,000) with a comma
    return all(len(p) == 3 for p in parts[1:]) or (
        mark == "," and all(len(p) == 2 for p in parts[1:-1])
    )


def _ungroup(whole: str, mark: str) -> str:
    return whole.replace(mark, "")


# --- espeak-ng languages: es, fr, hi, it, pt-br ---------------------------------------


@dataclass(frozen=True)
class _Words:
    decimal_comma: bool
    point: str  # word for the decimal separator
    minus: str
    degrees: str
    celsius: str
    currencies: dict[str, tuple[str, str]]  # symbol -> (one, many)
    clock: Callable[[int, int], str]
    digits_after_point: bool = False  # read decimals digit by digit (Hindi)


def _es_clock(h: int, m: int) -> str:
    return f"{h} en punto" if m == 0 else f"{h} y {m}"


def _fr_clock(h: int, m: int) -> str:
    hours = "une heure" if h == 1 else f"{h} heures"
    return hours if m == 0 else f"{hours} {m}"


def _it_clock(h: int, m: int) -> str:
    return f"{h}" if m == 0 else f"{h} e {m}"


def _pt_clock(h: int, m: int) -> str:
    hours = "uma hora" if h == 1 else f"{h} horas"
    return hours if m == 0 else f"{hours} e {m}"


def _hi_clock(h: int, m: int) -> str:
    return f"{h} बजे" if m == 0 else f"{h} बजकर {m} मिनट"


_ESPEAK_WORDS: dict[str, _Words] = {
    "e": _Words(
        True,
        "coma",
        "menos",
        "grados",
        "grados Celsius",
        {
            "€": ("euro", "euros"),
            "$": ("dólar", "dólares"),
            "US$": ("dólar", "dólares"),
            "£": ("libra", "libras"),
            "¥": ("yen", "yenes"),
        },
        _es_clock,
    ),
    "f": _Words(
        True,
        "virgule",
        "moins",
        "degrés",
        "degrés Celsius",
        {
            "€": ("euro", "euros"),
            "$": ("dollar", "dollars"),
            "US$": ("dollar", "dollars"),
            "£": ("livre", "livres"),
            "¥": ("yen", "yens"),
        },
        _fr_clock,
    ),
    "i": _Words(
        True,
        "virgola",
        "meno",
        "gradi",
        "gradi Celsius",
        {
            "€": ("euro", "euro"),
            "$": ("dollaro", "dollari"),
            "US$": ("dollaro", "dollari"),
            "£": ("sterlina", "sterline"),
            "¥": ("yen", "yen"),
        },
        _it_clock,
    ),
    "p": _Words(
        True,
        "vírgula",
        "menos",
        "graus",
        "graus Celsius",
        {
            "R$": ("real", "reais"),
            "€": ("euro", "euros"),
            "$": ("dólar", "dólares"),
            "US$": ("dólar", "dólares"),
            "£": ("libra", "libras"),
            "¥": ("iene", "ienes"),
        },
        _pt_clock,
    ),
    "h": _Words(
        False,
        "दशमलव",
        "माइनस",
        "डिग्री",
        "डिग्री सेल्सियस",
        {
            "₹": ("रुपया", "रुपये"),
            "Rs.": ("रुपया", "रुपये"),
            "Rs": ("रुपया", "रुपये"),
            "$": ("डॉलर", "डॉलर"),
            "US$": ("डॉलर", "डॉलर"),
            "€": ("यूरो", "यूरो"),
            "£": ("पाउंड", "पाउंड"),
        },
        _hi_clock,
        digits_after_point=True,
    ),
}

_NUM = r"\d[\d.,\u00a0\u202f]*\d|\d"
_CLOCK = re.compile(rf"(?<![{_A}:.,])([01]?\d|2[0-3]):([0-5]\d)(?![{_A}:]|[.,]\d)")
# 8h30, 8 h 30, 8h (French, Portuguese)
_CLOCK_H = re.compile(r"(?<![\w:.,])([01]?\d|2[0-3])\s?h\s?([0-5]\d)?(?!\w)")
_MINUS = re.compile(rf"(?<![{_A}.,])[-\u2212](?=\d)")
_DEGREES = re.compile(r"(?<=\d)\s?°\s?([CF])?(?![A-Za-z])")
_DEVANAGARI_DIGITS = str.maketrans("०१२३४५६७८९", "0123456789")


def _currency_re(symbols: list[str]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    alt = "|".join(re.escape(s) for s in sorted(symbols, key=len, reverse=True))
    before = re.compile(rf"(?<![{_A}$])({alt})\s?({_NUM})")
    after = re.compile(rf"(?<![{_A}.,])({_NUM})\s?({alt})(?![{_A}$])")
    return before, after


_CURRENCY_RES = {code: _currency_re(list(w.currencies)) for code, w in _ESPEAK_WORDS.items()}


def normalize_espeak(text: str, code: str) -> str:
    """Numbers, clock times, currencies and degrees as words espeak-ng reads right."""
    words = _ESPEAK_WORDS[code]
    if code == "h":
        text = text.translate(_DEVANAGARI_DIGITS).replace("।", ".").replace("॥", ".")

    def clock(m: re.Match[str]) -> str:
        return words.clock(int(m.group(1)), int(m.group(2) or 0))

    text = _CLOCK.sub(clock, text)
    if code == "h":
        text = re.sub(r"(मिनट|बजे)\s+बजे", r"\1", text)  # "8:30 बजे": बजे said once
    if code in ("f", "p"):
        text = _CLOCK_H.sub(clock, text)
    before, after = _CURRENCY_RES[code]

    def money(number: str, symbol: str) -> str:
        one, many = words.currencies[symbol]
        return f"{number} {one if number == '1' else many}"

    text = before.sub(lambda m: money(m.group(2), m.group(1)), text)
    text = after.sub(lambda m: money(m.group(1), m.group(2)), text)
    text = _DEGREES.sub(
        lambda m: (
            " "
            + (words.celsius if m.group(1) == "C" else words.degrees)
            + (" Fahrenheit" if m.group(1) == "F" else "")
        ),
        text,
    )
    text = _MINUS.sub(words.minus + " ", text)

    def number(m: re.Match[str]) -> str:
        parts = _split_number(m.group(0), words.decimal_comma)
        if parts is None:
            return m.group(0)
        whole, frac = parts
        if not frac:
            return whole
        if words.digits_after_point or frac.startswith("0") or len(frac) > 2:
            frac = " ".join(frac)
        return f"{whole} {words.point} {frac}"

    return _NUMBER.sub(number, text)


# --- Mandarin -------------------------------------------------------------------------

_ZH_CURRENCIES = {"¥": "元", "￥": "元", "$": "美元", "US$": "美元", "€": "欧元", "£": "英镑"}
_ZH_CURRENCY_BEFORE, _ZH_CURRENCY_AFTER = _currency_re(list(_ZH_CURRENCIES))
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９．，：％", "0123456789.,:%")
_ZH_DIGITS = "零一二三四五六七八九"


def normalize_chinese(text: str) -> str:
    """Thousands separators, currency symbols, clock times and degrees for ``cn2an``."""
    text = _fullwidth_numbers(text)

    def clock(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2))
        if mi == 0:
            return f"{h}点"
        return f"{h}点零{_ZH_DIGITS[mi]}分" if mi < 10 else f"{h}点{mi}分"

    text = _CLOCK.sub(clock, text)
    text = _ZH_CURRENCY_BEFORE.sub(lambda m: f"{m.group(2)}{_ZH_CURRENCIES[m.group(1)]}", text)
    text = _ZH_CURRENCY_AFTER.sub(lambda m: f"{m.group(1)}{_ZH_CURRENCIES[m.group(2)]}", text)
    text = _DEGREES.sub(
        lambda m: "摄氏度" if m.group(1) == "C" else "华氏度" if m.group(1) == "F" else "度", text
    )

    def number(m: re.Match[str]) -> str:
        parts = _split_number(m.group(0), decimal_comma=False)
        if parts is None:
            return m.group(0)
        whole, frac = parts
        return f"{whole}.{frac}" if frac else whole

    return _NUMBER.sub(number, text)


def _fullwidth_numbers(text: str) -> str:
    # only between/next to digits: a full-width comma in prose stays a comma
    return re.sub(
        r"[０-９](?:[０-９．，：0-9.,:]*[０-９0-9])?％?|(?<=[\d０-９])[．，：](?=[\d０-９])|(?<=\d)％",
        lambda m: m.group(0).translate(_FULLWIDTH_DIGITS),
        text,
    )


# --- Japanese -------------------------------------------------------------------------

_JA_CURRENCIES = {"¥": "円", "￥": "円", "$": "ドル", "US$": "ドル", "€": "ユーロ", "£": "ポンド"}
_JA_CURRENCY_BEFORE, _JA_CURRENCY_AFTER = _currency_re(list(_JA_CURRENCIES))
_KANJI_DIGITS = "〇一二三四五六七八九"
_KANJI_SMALL = ((1000, "千"), (100, "百"), (10, "十"))
_KANJI_LARGE = ("", "万", "億", "兆", "京")


def normalize_japanese(text: str) -> str:
    """Currency symbols, ``%``, clock times, degrees and a leading minus as Japanese words."""
    text = unicodedata.normalize("NFKC", text)

    def clock(m: re.Match[str]) -> str:
        h, mi = int(m.group(1)), int(m.group(2))
        return f"{h}時" if mi == 0 else f"{h}時{mi}分"

    text = _CLOCK.sub(clock, text)
    text = _JA_CURRENCY_BEFORE.sub(lambda m: f"{m.group(2)}{_JA_CURRENCIES[m.group(1)]}", text)
    text = _JA_CURRENCY_AFTER.sub(lambda m: f"{m.group(1)}{_JA_CURRENCIES[m.group(2)]}", text)
    text = re.sub(r"(?<=\d)\s?%", "パーセント", text)
    text = _DEGREES.sub("度", text)
    text = _MINUS.sub("マイナス", text)
    return japanese_numbers(text)


def japanese_numbers(text: str) -> str:
    """Arabic numerals as kanji numerals (``2024`` -> 二千二十四, ``3.5`` -> 三点五).

    Always applied before misaki-ja-lightning, whose own digit handling misreads
    counters and fails on ten digits or more.
    """
    text = unicodedata.normalize("NFKC", text) if not text.isascii() else text

    def number(m: re.Match[str]) -> str:
        parts = _split_number(m.group(0), decimal_comma=False)
        if parts is None:
            return "点".join(_kanji_digits(p) for p in re.split(r"[.,]", m.group(0)) if p)
        whole, frac = parts
        out = kanji_number(whole)
        return f"{out}点{_kanji_digits(frac)}" if frac else out

    return _NUMBER.sub(number, text)


def kanji_number(digits: str) -> str:
    """``"1500"`` -> 千五百; leading zeros or more than 20 digits: digit by digit."""
    if (len(digits) > 1 and digits.startswith("0")) or len(digits) > 20:
        return _kanji_digits(digits)
    n = int(digits)
    if n == 0:
        return "ゼロ"
    out = []
    for power, unit in reversed(list(enumerate(_KANJI_LARGE))):
        group = (n // 10_000**power) % 10_000
        if group:
            out.append(_kanji_group(group) + unit)
    return "".join(out)


def _kanji_group(n: int) -> str:
    out = []
    for value, unit in _KANJI_SMALL:
        d = n // value % 10
        if d:
            out.append(("" if d == 1 else _KANJI_DIGITS[d]) + unit)
    if n % 10:
        out.append(_KANJI_DIGITS[n % 10])
    return "".join(out)


def _kanji_digits(digits: str) -> str:
    return "".join(_KANJI_DIGITS[int(d)] for d in digits if d.isdigit())


# --- dispatch -------------------------------------------------------------------------


def normalize(text: str, code: str) -> str:
    """The reading rules for Kokoro language ``code`` (English is in :mod:`.text`)."""
    if code in _ESPEAK_WORDS:
        return normalize_espeak(text, code)
    if code == "z":
        return normalize_chinese(text)
    if code == "j":
        return normalize_japanese(text)
    return text
