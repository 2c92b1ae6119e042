"""SSML ``<say-as>``: how a token is read (letters, numbers, dates, times, phone numbers).

Each reading is rewritten as plain text in the span's language, which the G2P and its
reading rules then speak like any other text. So the rewriting stays small: numbers
become words where ``num2words`` knows the language (cardinal, ordinal), and digits,
letters and phone numbers become single symbols separated by spaces, which every
language's G2P reads one by one in its own words ("5 5 5" is "cinq cinq cinq" in
French). Dates are spelled out in English; elsewhere their parts are numbers in the
order the ``format`` gives. Times become ``HH:MM``, which each language's reading rules
already say as a clock time.

Pure functions; a value that cannot be read as asked raises :class:`SayAsError` with a
message the SSML parser puts a line and column on.
"""

from __future__ import annotations

import re

from num2words import num2words

# Kokoro language code -> num2words language (Hindi and Mandarin have none: digits stay).
_NUM2WORDS = {"a": "en", "b": "en", "e": "es", "f": "fr", "i": "it", "p": "pt_BR", "j": "ja"}
_ENGLISH = frozenset("ab")
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_DATE_FORMATS = frozenset("mdy dmy ymd md dm ym my y m d".split())
_TIME = re.compile(r"^\s*(\d{1,2})(?::?(\d{2}))?(?::(\d{2}))?\s*([ap])?\.?\s*(?:m\.?)?\s*$", re.I)
_NUMBER = re.compile(r"^[+-]?\d[\d,.\u00a0\u202f ]*$")

INTERPRETATIONS = (
    "characters",
    "spell-out",
    "cardinal",
    "number",
    "ordinal",
    "digits",
    "date",
    "time",
    "telephone",
)


class SayAsError(ValueError):
    """A say-as value that cannot be read as its ``interpret-as`` says."""


def say_as(text: str, interpret: str, fmt: str | None, lang: str) -> str:
    """``text`` rewritten as it should be read, for Kokoro language ``lang``."""
    kind = interpret.strip().lower()
    value = " ".join(text.split())
    if not value:
        return ""
    if kind in ("characters", "spell-out"):
        return spell(value, lang)
    if kind in ("cardinal", "number"):
        return _number(value, lang, ordinal=False)
    if kind == "ordinal":
        return _number(value, lang, ordinal=True)
    if kind == "digits":
        return " ".join(c for c in value if c.isdigit()) or spell(value, lang)
    if kind == "date":
        return _date(value, (fmt or "ymd").strip().lower(), lang)
    if kind == "time":
        return _time(value, lang)
    if kind == "telephone":
        return telephone(value, lang)
    raise SayAsError(
        f"say-as interpret-as {interpret!r} is not supported; use one of: "
        + ", ".join(INTERPRETATIONS)
    )


def spell(value: str, lang: str) -> str:
    """One symbol at a time: "HVAC" -> "H V A C". In English the letter A gets a full
    stop ("A.") so misaki reads the letter's name, not the article."""
    symbols = [c.upper() if lang in _ENGLISH else c for c in value if c.isalnum()]
    if lang in _ENGLISH:
        symbols = ["A." if c == "A" else c for c in symbols]
    return " ".join(symbols)


def telephone(value: str, lang: str) -> str:
    """Digits one by one, each group a phrase: "+1 555-0100" -> "plus 1, 5 5 5, 0 1 0 0"
    (the "plus" in English only: elsewhere the digits alone)."""
    groups = [g for g in re.split(r"[\s().\-/]+", value) if g]
    spoken = []
    for group in groups:
        lead = "plus " if group.startswith("+") and lang in _ENGLISH else ""
        digits = " ".join(c for c in group if c.isalnum())
        if digits:
            spoken.append(lead + digits)
    if not spoken:
        raise SayAsError(f"say-as telephone {value!r} has no digits")
    return ", ".join(spoken)


def _integer(value: str) -> int:
    cleaned = re.sub(r"[,.\u00a0\u202f ]", "", value)
    if not _NUMBER.match(value) or not cleaned.lstrip("+-").isdigit():
        raise SayAsError(f"say-as number {value!r} is not a whole number")
    return int(cleaned)


def _number(value: str, lang: str, *, ordinal: bool) -> str:
    value = value.rstrip(".")
    if ordinal:
        value = re.sub(r"(?<=\d)(st|nd|rd|th|º|ª|°|e|er|re|o|a)$", "", value, flags=re.I)
    n = _integer(value)
    words = _NUM2WORDS.get(lang)
    if words is None:
        return str(n)  # the language's own reading rules say the digits
    try:
        return num2words(n, lang=words, to="ordinal" if ordinal else "cardinal")
    except (NotImplementedError, OverflowError):
        return str(n)


def _date(value: str, fmt: str, lang: str) -> str:
    if fmt not in _DATE_FORMATS:
        raise SayAsError(
            f"say-as date format {fmt!r} is not supported; use one of: "
            + ", ".join(sorted(_DATE_FORMATS))
        )
    parts = [p for p in re.split(r"[\s/.\-]+", value) if p]
    if re.fullmatch(r"\d{4}-\d{1,2}-\d{1,2}", value.strip()):
        fmt = "ymd"  # ISO 8601 whatever the format says
    if len(parts) != len(fmt) or not all(p.isdigit() for p in parts):
        raise SayAsError(f"say-as date {value!r} does not match format {fmt!r}")
    fields = dict(zip(fmt, (int(p) for p in parts), strict=True))
    if "m" in fields and not 1 <= fields["m"] <= 12:
        raise SayAsError(f"say-as date {value!r}: month {fields['m']} is not 1 to 12")
    if "d" in fields and not 1 <= fields["d"] <= 31:
        raise SayAsError(f"say-as date {value!r}: day {fields['d']} is not 1 to 31")
    if lang not in _ENGLISH:
        return " ".join(str(fields[c]) for c in fmt)
    month = _MONTHS[fields["m"] - 1] if "m" in fields else ""
    day = num2words(fields["d"], lang="en", to="ordinal") if "d" in fields else ""
    if month and day:
        said = f"the {day} of {month}" if fmt.index("d") < fmt.index("m") else f"{month} {day}"
    else:
        said = month or (f"the {day}" if day else "")
    if "y" in fields:
        year = num2words(fields["y"], lang="en", to="year")
        said = f"{said}, {year}" if day else f"{said} {year}".strip()
    return said


def _time(value: str, lang: str) -> str:
    m = _TIME.match(value)
    if m is None:
        raise SayAsError(f"say-as time {value!r} is not a clock time (like 14:30 or 2:30pm)")
    hour, minute = int(m.group(1)), int(m.group(2) or 0)
    ampm = m.group(4)
    if minute > 59 or hour > (12 if ampm else 23):
        raise SayAsError(f"say-as time {value!r} is not a clock time")
    if ampm and lang in _ENGLISH:  # English reading rules say "two thirty p m"
        return f"{hour}:{minute:02d} {ampm.lower()}m"
    if ampm:  # elsewhere as 24-hour, which every language's reading rules say
        hour = hour % 12 + (12 if ampm.lower() == "p" else 0)
    return f"{hour}:{minute:02d}"
