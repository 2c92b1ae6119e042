"""Text before G2P: pause tokens, cleanup, and reading real text the way people do.

Pure functions only. :func:`split_pauses` cuts ``[pause:1.5s]`` tokens out (strict
form only: ``[pause=1]`` stays text). :func:`clean` removes what is never speech
(control bytes, emoji, markdown syntax) and folds typography (:mod:`.typography`):
it is the one cleanup path every language and both front ends take, before any G2P.
Inline pronunciations (``[word](/phonemes/)``, :mod:`.inline`) pass it untouched.
:func:`normalize_english` rewrites what misaki would otherwise spell out symbol by
symbol (URLs, times, units, ranges).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from num2words import num2words

from . import inline
from .typography import fold_typography

_PAUSE = re.compile(r"\[pause:(\d{1,3}(?:\.\d{1,3})?)s\]")
MAX_PAUSE_S = 60.0


@dataclass(frozen=True)
class Pause:
    """A ``[pause:1.5s]`` in the input: silence of that length."""

    seconds: float


def split_pauses(text: str) -> list[str | Pause]:
    """``"a [pause:1s] b"`` -> ``["a ", Pause(1.0), " b"]``; empty text pieces dropped."""
    out: list[str | Pause] = []
    pos = 0
    for m in _PAUSE.finditer(text):
        if text[pos : m.start()].strip():
            out.append(text[pos : m.start()])
        out.append(Pause(min(float(m.group(1)), MAX_PAUSE_S)))
        pos = m.end()
    if text[pos:].strip():
        out.append(text[pos:])
    return out


# --- cleanup common to every language -------------------------------------------------

_MD_FENCE = re.compile(r"^\s*(```|~~~).*$", re.M)
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_MD_LINK = re.compile(r"\[([^\]]+)\]\((?:[^)]*)\)")
_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+", re.M)
_MD_QUOTE = re.compile(r"^\s{0,3}>\s?", re.M)
_MD_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,3}[.)])\s+", re.M)
_MD_RULE = re.compile(r"^\s*([-*_])(\s*\1){2,}\s*$", re.M)
_MD_EMPH = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1")
_MD_UNDERSCORE = re.compile(r"(?<![\w])_(?=\S)(.+?)(?<=\S)_(?![\w])")
_MD_CODE = re.compile(r"`([^`]*)`")
_MD_TABLE_SEP = re.compile(r"^\s*\|?(\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$", re.M)
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]{0,200}>")
_MD_TASK = re.compile(r"^\s*\[[ xX]\]\s+", re.M)  # - [x] done (after the bullet went)
_SPACES = re.compile(r"[ \t]+")  # other spaces: typography folded them
# A line that ends without punctuation (a list item, a heading) before the next line:
# a comma, so "Eggs\nMilk" is two items, not "eggs milk"; before a blank line, a full stop.
_BARE_LINE_END = re.compile(r"(?<=[^\s.,;:!?…—\-(\[{\"'])[ ]*(\n[ \n]*)")


def clean(text: str) -> str:
    """Drop what is never speech (control bytes, emoji, markdown and HTML syntax) and fold
    typography; inline pronunciations are kept as written."""
    text = unicodedata.normalize("NFC", text).replace("℃", "°C").replace("℉", "°F")
    text, spans = inline.protect(text)
    text = _MD_FENCE.sub(" ", text)
    text = _MD_TABLE_SEP.sub(" ", text)
    text = _MD_IMAGE.sub(r"\1", text)
    text = _MD_LINK.sub(r"\1", text)
    text = _MD_RULE.sub("\n", text)
    text = _MD_HEADING.sub("", text)
    text = _MD_QUOTE.sub("", text)
    text = _MD_BULLET.sub("", text)
    text = _MD_TASK.sub("", text)
    text = _MD_CODE.sub(r"\1", text)
    for _ in range(2):  # nested **_x_**
        text = _MD_EMPH.sub(r"\2", text)
        text = _MD_UNDERSCORE.sub(r"\1", text)
    text = _HTML_TAG.sub(" ", text)
    text = text.replace("|", ", ")
    text = inline.restore(fold_typography(text), spans)
    chars = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in "\n\t°":
            chars.append(ch)
        elif cat in ("Cc", "Cf", "Cs", "Co", "Cn") or cat == "So" or cat == "Sk":
            chars.append(" ")  # control bytes, emoji, pictographs: never spoken
        else:
            chars.append(ch)
    text = _SPACES.sub(" ", "".join(chars)).strip()
    return _BARE_LINE_END.sub(lambda m: ("." if m[1].count("\n") > 1 else ",") + m[1], text)


def has_speech(text: str) -> bool:
    """True if anything speakable (a letter or a digit) is left."""
    return any(unicodedata.category(c)[0] in "LN" for c in text)


# --- English reading rules ------------------------------------------------------------

_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"')\]]+", re.I)
_EMAIL = re.compile(r"\b([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)\b")
_TIME = re.compile(
    r"\b([01]?\d|2[0-3]):([0-5]\d)(?::[0-5]\d)?\s*([AaPp])\.?\s*[Mm]\.?(?=\W|$)|"
    r"\b([01]?\d|2[0-3]):([0-5]\d)\b"
)
_UNITS = {
    "km": "kilometers",
    "m": "meters",
    "cm": "centimeters",
    "mm": "millimeters",
    "kg": "kilograms",
    "g": "grams",
    "mg": "milligrams",
    "lb": "pounds",
    "lbs": "pounds",
    "oz": "ounces",
    "mi": "miles",
    "ft": "feet",
    "in": "inches",
    "km/h": "kilometers per hour",
    "kmh": "kilometers per hour",
    "mph": "miles per hour",
    "ms": "milliseconds",
    "s": "seconds",
    "min": "minutes",
    "h": "hours",
    "hrs": "hours",
    "kb": "kilobytes",
    "mb": "megabytes",
    "gb": "gigabytes",
    "tb": "terabytes",
    "kbps": "kilobits per second",
    "mbps": "megabits per second",
    "gbps": "gigabits per second",
    "hz": "hertz",
    "khz": "kilohertz",
    "mhz": "megahertz",
    "ghz": "gigahertz",
    "w": "watts",
    "kw": "kilowatts",
    "kwh": "kilowatt hours",
    "v": "volts",
    "ml": "milliliters",
    "l": "liters",
    "°c": "degrees Celsius",
    "°f": "degrees Fahrenheit",
    "°": "degrees",
}
_UNIT_RE = re.compile(
    r"(?<![\w.'])(\d+(?:[.,]\d+)?)\s?("
    + "|".join(sorted((re.escape(u) for u in _UNITS), key=len, reverse=True))
    + r")(?![\w/])",
    re.I,
)
_ABBREV = {
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "approx.": "approximately",
    "No.": "number",
    "Nos.": "numbers",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "Prof.": "Professor",
    "Gen.": "General",
    "Sgt.": "Sergeant",
    "Capt.": "Captain",
    "Lt.": "Lieutenant",
    "Mt.": "Mount",
    "Ave.": "Avenue",
    "Blvd.": "Boulevard",
    "Dept.": "Department",
}
_ABBREV_RE = re.compile(r"(?<!\w)(" + "|".join(re.escape(a) for a in _ABBREV) + r")(?=\s|$|[,;:])")
_MULT = re.compile(r"(?<=\d)\s*[*×]\s*(?=\d)")
_GROUPING = re.compile(r"(?<=\d)\u202f(?=\d{3})")  # 1 250 (typography kept the space)
# 5-10 minutes, 3-2 (a score): "to". Not dates, phone numbers or 4-digit ranges (years).
_RANGE = re.compile(r"(?<![\d.,:/-])(\d{1,3})-(\d{1,3})(?![\d:/-]|[.,]\d)")
_MINUS = re.compile(r"(?<![\w.,-])-(?=\d)")  # -3 °C: misaki dropped "-3" before "degrees"
_FEET = re.compile(r"(?<![\d.])(\d)'(\d{1,2})\"")  # 5'10"


def normalize_english(text: str) -> str:
    """Rewrite URLs, e-mail addresses, clock times, units and abbreviations as words."""
    text = _GROUPING.sub(",", text)
    text = _FEET.sub(lambda m: f"{m[1]} feet {m[2]} inches", text)
    text = _RANGE.sub(r"\1 to \2", text)
    text = _MINUS.sub("minus ", text)
    text = _URL.sub(lambda m: _read_url(m.group(0)), text)
    text = _EMAIL.sub(lambda m: f"{m[1].replace('.', ' dot ')} at {_dotted(m[2])}", text)
    text = _TIME.sub(_read_time, text)
    text = _UNIT_RE.sub(_read_unit, text)
    text = _ABBREV_RE.sub(lambda m: _ABBREV[m.group(1)], text)
    text = _MULT.sub(" times ", text)
    return text


def _dotted(host: str) -> str:
    return " dot ".join(host.split("."))


def _read_url(url: str) -> str:
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", url, flags=re.I).split("/")[0]
    host = host.split(":")[0].rstrip(".,;")
    return _dotted(host)


def _read_time(m: re.Match[str]) -> str:
    hour, minute, ampm = (m[1], m[2], m[3]) if m[1] else (m[4], m[5], None)
    h, mi = int(hour), int(minute)
    if mi == 0:
        words = f"{num2words(h)}" + ("" if ampm else " o'clock" if h <= 12 else " hundred")
    elif mi < 10:
        words = f"{num2words(h)} oh {num2words(mi)}"
    else:
        words = f"{num2words(h)} {num2words(mi)}"
    if ampm:
        words += " a m" if ampm.lower() == "a" else " p m"
    return words


def _read_unit(m: re.Match[str]) -> str:
    number, unit = m.group(1), m.group(2)
    words = _UNITS[unit.lower()] if unit.lower() in _UNITS else _UNITS[unit]
    if unit in ("m", "s", "h", "g", "l", "w", "v") and unit != unit.lower():
        return m.group(0)  # a capital single letter is more likely a name than a unit
    if number in ("1", "1.0"):
        words = words.replace("meters", "meter").rstrip("s") if words.endswith("s") else words
    return f"{number} {words}"
