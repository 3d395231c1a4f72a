"""English text → words a phonemizer reads right: numbers, dates, times, money, units, abbreviations, symbols.

Number words come from `num2words` (cardinals, ordinals), with "and" and commas dropped (a comma would be
a clause break for espeak-ng); the patterns are ours. Rules run in the order of `_RULES`, each one line;
URLs and e-mail addresses are left as written. Deterministic: regular expressions and table look-ups only.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from num2words import num2words

MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
_MONTH = r"(?P<month>" + "|".join(m for m in MONTHS) + r"|" + "|".join(m[:3] for m in MONTHS) + r")"
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # "1,000,000.5", "3.14", "42"
_SCALES = {"thousand": "thousand", "million": "million", "billion": "billion", "trillion": "trillion"}
_SCALES |= {"k": "thousand", "K": "thousand", "m": "million", "M": "million", "bn": "billion", "B": "billion"}
_CURRENCIES = {  # symbol → (singular, plural, cent singular, cent plural)
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
}
_UNITS = {  # symbol → (singular, plural); matched only right after a number
    "km": ("kilometer", "kilometers"),
    "m": ("meter", "meters"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "mi": ("mile", "miles"),
    "ft": ("foot", "feet"),
    "kg": ("kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "ml": ("milliliter", "milliliters"),
    "KB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "ms": ("millisecond", "milliseconds"),
    "mph": ("mile per hour", "miles per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
# Abbreviations read the same wherever they stand. Titles precede a name: no sentence ends after them.
_TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor", "Mt": "Mount"}
_ABBREVIATIONS = {  # may end a sentence: the period is kept before a capital or the end
    "Jr.": "Junior",
    "Sr.": "Senior",
    "etc.": "et cetera",
    "vs.": "versus",
    "vs": "versus",
    "e.g.": "for example",
    "i.e.": "that is",
    "approx.": "approximately",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Ave.": "Avenue",
    "Rd.": "Road",
}
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
_AMPM = r"(?:\s*(?P<ampm>[aApP])\.?[mM]\.?(?=\W|$))"
_URL = re.compile(r"\b(?:https?://|www\.)\S+[^\s.,;:!?)\]]|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")


def cardinal(number: str) -> str:
    """ "1,234.05" → "one thousand two hundred thirty-four point zero five" (digits after the point one by one)."""
    number = number.replace(",", "")
    sign = "minus " if number.startswith("-") else ""
    whole, _, frac = number.lstrip("-").partition(".")
    words = _int_words(int(whole or "0"))
    if frac:
        words += " point " + " ".join(_int_words(int(d)) for d in frac)
    return sign + words


def _int_words(n: int) -> str:
    return num2words(n).replace(" and ", " ").replace(",", "")


def ordinal(n: int) -> str:
    """21 → "twenty-first"."""
    return num2words(n, to="ordinal").replace(" and ", " ").replace(",", "")


def year(n: int) -> str:
    """1984 → "nineteen eighty-four", 2008 → "two thousand eight", 1900 → "nineteen hundred", 1905 →
    "nineteen oh five", 2024 → "twenty twenty-four"."""
    hi, lo = divmod(n, 100)
    if 2000 <= n <= 2009 or (hi % 10 == 0 and lo == 0):
        return _int_words(n)  # 2000–2009, 1000, 2000: as a cardinal
    if lo == 0:
        return _int_words(hi) + " hundred"
    return _int_words(hi) + (" oh " if lo < 10 else " ") + _int_words(lo)


def _money(m: re.Match[str]) -> str:
    one, many, cent, cents = _CURRENCIES[m["cur"]]
    amount, scale = m["amount"].replace(",", ""), m["scale"]
    if scale:  # "£1.2 million" → "one point two million pounds"
        return f"{cardinal(amount)} {_SCALES[scale]} {many}"
    whole, _, frac = amount.partition(".")
    units = int(whole or "0")
    parts = [f"{_int_words(units)} {one if units == 1 else many}"] if units or not frac else []
    if len(frac) == 2 and int(frac):
        c = int(frac)
        parts.append(f"{_int_words(c)} {cent if c == 1 else cents}")
    elif frac and int(frac):  # "$1.125": not a cents amount, read the point
        return f"{cardinal(amount)} {many}"
    return " and ".join(parts)


def _unit(m: re.Match[str]) -> str:
    one, many = _UNITS[m["unit"]]
    return f"{cardinal(m['n'])} {one if m['n'] in ('1', '-1') else many}"


def _ampm(m: re.Match[str]) -> str:
    """ " a.m." / " p.m." (espeak-ng reads "AM" as a word, "a.m." as letters); its last period ends a sentence."""
    return {"a": " a.m.", "p": " p.m."}[m["ampm"].lower()] if m["ampm"] else ""


def _ends_sentence(m: re.Match[str]) -> bool:
    return re.match(r"\s*$|\s+[A-Z\"'(]", m.string[m.end() :]) is not None


def _time(m: re.Match[str]) -> str:
    h, mins = int(m["h"]), int(m["m"])
    words = _int_words(h)
    if mins == 0:
        words += "" if m["ampm"] else " hundred"  # "3:00 pm", "fourteen hundred"
    else:
        words += (" oh " if mins < 10 else " ") + _int_words(mins)
    if m["s"]:
        words += f" and {_int_words(int(m['s']))} seconds"
    return words + _ampm(m)


def _iso_date(m: re.Match[str]) -> str:
    y, mo, d = int(m["y"]), int(m["mo"]), int(m["d"])
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return m[0]
    return f"{MONTHS[mo - 1]} {ordinal(d)}, {year(y)}"


def _slash_date(m: re.Match[str]) -> str:
    a, b, y = int(m["a"]), int(m["b"]), int(m["y"])
    if a > 12 and 1 <= b <= 12 and a <= 31:  # day first: 15/03/2024
        return f"{MONTHS[b - 1]} {ordinal(a)}, {year(y)}"
    if b > 12 and 1 <= a <= 12 and b <= 31:  # month first: 03/15/2024
        return f"{MONTHS[a - 1]} {ordinal(b)}, {year(y)}"
    return f"{_int_words(a)} {_int_words(b)} {year(y)}"  # ambiguous (both ≤ 12) or invalid: the numbers


def _month_day(m: re.Match[str]) -> str:
    month = next(x for x in MONTHS if x.startswith(m["month"][:3]))
    return f"{month} {ordinal(int(m['d']))}"


def _day_month(m: re.Match[str]) -> str:
    month = next(x for x in MONTHS if x.startswith(m["month"][:3]))
    return f"the {ordinal(int(m['d']))} of {month}"


def _title(m: re.Match[str]) -> str:
    return _TITLES[m["t"]] + ("." if m["dot"] and not m.string[m.end() :].strip() else "")


def _abbreviation(m: re.Match[str]) -> str:
    abbr = m["a"]
    word = _ABBREVIATIONS[abbr]
    return word + ("." if abbr.endswith(".") and _ends_sentence(m) else "")


def _saint_or_street(m: re.Match[str]) -> str:
    if m["prev"]:  # after a capitalised word: "Main St." is a street
        return m["prev"] + "Street" + ("." if _ends_sentence(m) else "")
    return "Saint"


_Rule = tuple[re.Pattern[str], "str | Callable[[re.Match[str]], str]"]
_RULES: list[_Rule] = [
    # "2024-03-15" → "March fifteenth, twenty twenty-four".
    (re.compile(r"\b(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})\b"), _iso_date),
    # "15/03/2024" day first, "03/15/2024" month first; both parts ≤ 12 is ambiguous: read as numbers.
    (re.compile(r"\b(?P<a>\d{1,2})/(?P<b>\d{1,2})/(?P<y>\d{4})\b"), _slash_date),
    # "March 15" / "Mar. 15th" → "March fifteenth" (the year after it is read by the year rule).
    (re.compile(_MONTH + r"\.?\s+(?P<d>[12]?\d|3[01])(?:st|nd|rd|th)?\b"), _month_day),
    # "15 March" / "15th of March" → "the fifteenth of March".
    (re.compile(r"\b(?P<d>[12]?\d|3[01])(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH + r"\b"), _day_month),
    # "3:45 pm" → "three forty-five p.m."; "14:30" → "fourteen thirty"; "14:00" → "fourteen hundred".
    (
        re.compile(r"\b(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?" + _AMPM + "?"),
        _time,
    ),
    # "5 pm" → "five p.m.".
    (re.compile(r"\b(?P<h>1[0-2]|0?\d)" + _AMPM), lambda m: _int_words(int(m["h"])) + _ampm(m)),
    # "$3.50" → "three dollars and fifty cents"; "£1.2 million" → "one point two million pounds".
    (
        re.compile(
            r"(?P<cur>[$€£¥])\s?(?P<amount>"
            + _NUM
            + r")(?:\s?(?P<scale>thousand|million|billion|trillion|bn|[kKmMB])\b)?"
        ),
        _money,
    ),
    # "50%" → "fifty percent".
    (re.compile(r"(?P<n>-?(?:" + _NUM + r"))\s?%"), lambda m: cardinal(m["n"]) + " percent"),
    # "72°F" → "seventy-two degrees Fahrenheit", "5 km" → "five kilometers" (plural unless exactly 1).
    (
        re.compile(
            r"(?<![\w.])(?P<n>-?(?:"
            + _NUM
            + r"))\s?(?P<unit>"
            + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
            + r")(?![\w/])"
        ),
        _unit,
    ),
    # "1st", "22nd", "103rd" → "first", "twenty-second", "one hundred third".
    (re.compile(r"\b(?P<n>\d+)(?:st|nd|rd|th)\b"), lambda m: ordinal(int(m["n"]))),
    # Titles: "Dr. Smith" → "Doctor Smith", "Mr. and Mrs." → "Mister and Missus" (no sentence ends there).
    (re.compile(r"\b(?P<t>" + "|".join(_TITLES) + r")(?:(?P<dot>\.)|(?=\s+[A-Z]))"), _title),
    # "Main St." → "Main Street" (after a capitalised word), otherwise "St. Louis" → "Saint Louis".
    (re.compile(r"(?P<prev>\b[A-Z][a-z]+\s+)?\bSt\.(?=\s|$)"), _saint_or_street),
    # Other abbreviations: "etc." → "et cetera" (the period kept where it ends the sentence).
    (
        re.compile(
            r"(?<![\w.])(?P<a>"
            + "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
            + r")(?![\w])"
        ),
        _abbreviation,
    ),
    # Version-like dotted numbers "2.0.1" → "two point zero point one".
    (
        re.compile(r"\b\d+(?:\.\d+){2,}\b"),
        lambda m: " point ".join(_int_words(int(p)) for p in m[0].split(".")),
    ),
    # Decades: "1990s" → "nineteen nineties".
    (re.compile(r"\b(?P<y>1[1-9]\d0|20\d0)s\b"), lambda m: re.sub(r"y$", "ie", year(int(m["y"]))) + "s"),
    # Years: a bare 4-digit integer from 1100 to 2099 → "nineteen eighty-four" (write "1,984" for a count).
    (re.compile(r"(?<![\d.,])(?P<y>1[1-9]\d\d|20\d\d)(?!\d|[.,]\d)"), lambda m: year(int(m["y"]))),
    # Cardinals, negatives and decimals: "-1,000.5" → "minus one thousand point five".
    (
        re.compile(r"(?:(?<=^)|(?<=[\s(\[]))-(?=\d)|(?<![\d.])(?:" + _NUM + r")"),
        lambda m: "minus " if m[0] == "-" else cardinal(m[0]),
    ),
    # Symbols: "&" → "and", "+" → "plus", "=" → "equals", "@" → "at", "#" → "number".
    (re.compile(r"[&+=@#]"), lambda m: _SYMBOLS[m[0]]),
]


def _normalize_plain(text: str) -> str:
    for pattern, repl in _RULES:
        text = pattern.sub(repl, text)
    return text


def normalize_text(text: str, lang: str = "en") -> str:
    """Text with numbers, dates, times, money, units, abbreviations and symbols written out as English words,
    whitespace collapsed. `lang` other than English ("en", "en-us", "en-gb", ...) only collapses whitespace:
    espeak-ng reads digits in the voice's language itself."""
    if lang.lower().split("-")[0].split("_")[0] == "en":
        pieces, last = [], 0
        for url in _URL.finditer(text):  # URLs and e-mail addresses pass through untouched
            pieces += [_normalize_plain(text[last : url.start()]), url[0]]
            last = url.end()
        text = "".join([*pieces, _normalize_plain(text[last:])])
    paragraphs = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text))
    return "\n\n".join(p for p in paragraphs if p)
