"""Sentence splitting: where it cuts, where it never cuts, bounded length, and the stream == the whole."""

from __future__ import annotations

import random

import pytest

from models.text import SentenceStream, split_sentences

SPLITS = [
    ("Hello there. How are you? I'm fine!", ["Hello there.", "How are you?", "I'm fine!"]),
    ("Pi is 3.14 and 1,000 is big. Next.", ["Pi is 3.14 and 1,000 is big.", "Next."]),
    ("Dr. Smith met Mr. Jones. They talked.", ["Dr. Smith met Mr. Jones.", "They talked."]),
    ("Fruit, e.g. apples. The U.S. Army is big.", ["Fruit, e.g. apples.", "The U.S. Army is big."]),
    ("We meet at 3:45 today. Ok.", ["We meet at 3:45 today.", "Ok."]),
    (
        "Visit https://example.com/a?b=1.2 today. Or mail a.b@example.com. Bye",
        ["Visit https://example.com/a?b=1.2 today.", "Or mail a.b@example.com.", "Bye"],
    ),
    ('He said "Stop." Then left. (Quietly.) Done', ['He said "Stop."', "Then left.", "(Quietly.)", "Done"]),
    ("Wait... What?! Really?? yes. no", ["Wait...", "What?!", "Really?? yes. no"]),
    ("Title\n\nBody text\nsame paragraph", ["Title", "Body text same paragraph"]),
    ("Ends in lower case. and goes on", ["Ends in lower case. and goes on"]),
    ("   ", []),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), SPLITS)
def test_split_table(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_long_sentences_are_bounded_at_clause_marks_then_spaces() -> None:
    text = "First clause here; second clause, with a comma, and more words that go on and on until the end."
    assert split_sentences(text, max_chars=40) == [
        "First clause here;",
        "second clause, with a comma,",
        "and more words that go on and on until",
        "the end.",
    ]
    assert split_sentences("x" * 25, max_chars=10) == ["x" * 10, "x" * 10, "x" * 5]


LONG = (
    "Dr. Smith paid $3.14 for 1,000 items, e.g. apples; at 3:45 p.m. he left. Visit https://x.org/a?b=1. "
    "Wow!!! Really?! ok. Fine…  Next\n\nNew paragraph: with a colon, commas, and a very long tail of words "
    + "that keeps going " * 20
    + ". The end"
)


@pytest.mark.parametrize("max_chars", [20, 80, 300])
def test_stream_char_by_char_and_in_random_chunks_equals_whole(max_chars: int) -> None:
    whole = split_sentences(LONG, max_chars=max_chars)
    stream = SentenceStream(max_chars)
    by_char = [s for ch in LONG for s in stream.feed(ch)] + stream.flush()
    assert by_char == whole
    rng = random.Random(0)
    stream, chunks, i = SentenceStream(max_chars), [], 0
    while i < len(LONG):
        n = rng.randint(1, 17)
        chunks += stream.feed(LONG[i : i + n])
        i += n
    assert chunks + stream.flush() == whole
    assert all(0 < len(s) <= max_chars for s in whole)
    assert "".join("".join(whole).split()) == "".join(LONG.split())  # nothing lost, nothing added


def test_stream_yields_a_sentence_as_soon_as_it_is_certain() -> None:
    stream = SentenceStream()
    assert stream.feed("Hello there.") == []  # "Hello there.x" could still be a URL or "3.14"
    assert stream.feed(" ") == []  # a lower-case word may follow ("etc. and")
    assert stream.feed("H") == ["Hello there."]
    assert stream.feed("ow are you? Fi") == ["How are you?"]
    assert stream.flush() == ["Fi"]
    assert stream.flush() == []


def test_max_chars_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_chars"):
        SentenceStream(0)
