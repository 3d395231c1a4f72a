"""English normalisation: input → the exact words expected, one table per rule family."""

from __future__ import annotations

import pytest

from models.text import normalize_text
from models.text.normalize import year

NUMBERS = [
    ("I have 42 apples.", "I have forty-two apples."),
    ("It was -7 outside.", "It was minus seven outside."),
    ("Pi is 3.14.", "Pi is three point one four."),
    ("We sold 1,000,000 units.", "We sold one million units."),
    (
        "Count 1,234,567 now",
        "Count one million two hundred thirty-four thousand five hundred sixty-seven now",
    ),
    ("Zero is 0 and 0.5 is half", "Zero is zero and zero point five is half"),
    ("The 1st, 2nd, 3rd and 21st.", "The first, second, third and twenty-first."),
    ("Version 2.0.1 is out.", "Version two point zero point one is out."),
    ("Pages 1,2,3", "Pages one,two,three"),
]
YEARS = [
    ("In 1984 we met.", "In nineteen eighty-four we met."),
    ("Since 2008.", "Since two thousand eight."),
    ("By 2024, yes.", "By twenty twenty-four, yes."),
    ("From 1905 to 1900", "From nineteen oh five to nineteen hundred"),
    ("In the 1990s.", "In the nineteen nineties."),
]
DATES = [
    ("On 2024-03-15 we met.", "On March fifteenth, twenty twenty-four we met."),
    ("March 15, 2024 was fine.", "March fifteenth, twenty twenty-four was fine."),
    ("Due 15 March", "Due the fifteenth of March"),
    ("15/03/2024", "March fifteenth, twenty twenty-four"),  # first part > 12: day first
    ("03/15/2024", "March fifteenth, twenty twenty-four"),  # second part > 12: month first
    ("03/04/2024", "three four twenty twenty-four"),  # ambiguous: left as numbers
]
TIMES = [
    ("At 3:45 pm.", "At three forty-five p.m."),
    ("At 14:30 today", "At fourteen thirty today"),
    ("At 14:00 today", "At fourteen hundred today"),
    ("At 9:05 a.m. Then", "At nine oh five a.m. Then"),
    ("Meet at 5pm, ok", "Meet at five p.m., ok"),
    ("Lap 10:02:07", "Lap ten oh two and seven seconds"),
]
MONEY = [
    ("It costs $3.50.", "It costs three dollars and fifty cents."),
    ("Just $1", "Just one dollar"),
    ("Only $0.99", "Only ninety-nine cents"),
    ("Pay €20 now", "Pay twenty euros now"),
    ("Worth £1.2 million", "Worth one point two million pounds"),
    ("Raised $5M", "Raised five million dollars"),
    ("Total $1,250.00", "Total one thousand two hundred fifty dollars"),
    ("Up 50% and 3.5 %", "Up fifty percent and three point five percent"),
]
ABBREVIATIONS = [
    ("Dr. Smith is here.", "Doctor Smith is here."),
    ("Mr. and Mrs. Jones", "Mister and Missus Jones"),
    ("On Main St. near St. Louis", "On Main Street near Saint Louis"),
    ("Apples, pears etc. Then more.", "Apples, pears et cetera. Then more."),
    ("Cats vs. dogs", "Cats versus dogs"),
    ("Fruit, e.g. apples, i.e. food", "Fruit, for example apples, that is food"),
]
UNITS_SYMBOLS = [
    ("Run 5 km and lift 10 kg.", "Run five kilometers and lift ten kilograms."),
    ("A 3.5 GB file and 1 kg", "A three point five gigabytes file and one kilogram"),
    ("It is 72°F or -3°C.", "It is seventy-two degrees Fahrenheit or minus three degrees Celsius."),
    ("Tom & Jerry", "Tom and Jerry"),
    ("2 + 2 = 4", "two plus two equals four"),
    ("Up at 5 in the morning", "Up at five in the morning"),
]
LEFT_ALONE = [
    ("Mail a.b@example.com or see https://example.com/a?b=1.", None),
    ("No digits here, just words.", None),
    ("Line one\nline two\n\n\nNew  para.", "Line one line two\n\nNew para."),
]


@pytest.mark.parametrize(
    ("text", "expected"), NUMBERS + YEARS + DATES + TIMES + MONEY + ABBREVIATIONS + UNITS_SYMBOLS + LEFT_ALONE
)
def test_english_table(text: str, expected: str | None) -> None:
    assert normalize_text(text) == (text if expected is None else expected)


def test_year_words() -> None:
    assert [year(y) for y in (1066, 1100, 1984, 2000, 2001, 2010, 2099)] == [
        "ten sixty-six",
        "eleven hundred",
        "nineteen eighty-four",
        "two thousand",
        "two thousand one",
        "twenty ten",
        "twenty ninety-nine",
    ]


def test_other_languages_only_collapse_whitespace() -> None:
    assert normalize_text("Il a  42 ans,\n  Dr. Martin.", lang="fr") == "Il a 42 ans, Dr. Martin."
    assert normalize_text("I have 42", lang="en-GB") == "I have forty-two"


def test_deterministic_and_idempotent_on_its_output() -> None:
    text = "Dr. Smith paid $3.50 on 2024-03-15 at 3:45 pm for 5 km & 72°F, 50% off."
    once = normalize_text(text)
    assert once == normalize_text(text)
    assert normalize_text(once) == once
