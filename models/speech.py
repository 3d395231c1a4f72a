"""What every speech family shares: OpenAI's voice names, the unknown-voice error, and the sentence loop
that turns a request's sentences into audio chunks through the worker's batching hook.

The loop synthesizes the first sentence alone (its audio leaves as soon as it exists), then the rest
`max_batch` at a time; batches are keyed so that concurrent requests with the same key share them
(`models.batching.Batched`). Each chunk is yielded as it comes, and `SpeechUsage` last.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Hashable, Sequence
from typing import Any, TypeVar

import numpy as np

from models.batching import Batched
from models.errors import InvalidRequest
from models.tasks import SpeechUsage

# OpenAI's voice names (CONTRACT.md): every speech model answers to them.
OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin",
    "cedar",
)  # fmt: skip

Row = TypeVar("Row")


def unknown_voice(voice: str, model: str, available: Sequence[str]) -> InvalidRequest:
    return InvalidRequest(
        f"Unknown voice '{voice}' for model '{model}': use one of {', '.join(available)} "
        f"(or an OpenAI voice name: {', '.join(OPENAI_VOICES)}).",
        param="voice",
        code="invalid_value",
    )


# The first sentence is cut after its first clause when both parts hold at least this many phonemes: the
# first audio then waits for that clause only (a clause is where a speaker pauses anyway).
FIRST_CLAUSE_MIN = 16
_CLAUSE_END = re.compile(r"[,;:] ")


def split_first_clause(sentences: list[str], min_len: int = FIRST_CLAUSE_MIN) -> list[str]:
    """Phoneme strings, one per sentence → the same with the first sentence cut after its first ", ",
    "; " or ": " that leaves `min_len` phonemes or more on both sides (unchanged where there is none)."""
    if not sentences:
        return sentences
    first = sentences[0]
    for m in _CLAUSE_END.finditer(first):
        head, tail = first[: m.start() + 1], first[m.end() :]
        if len(head) >= min_len and len(tail) >= min_len:
            return [head, tail, *sentences[1:]]
    return sentences


def nothing_to_speak() -> InvalidRequest:
    return InvalidRequest(
        "The input has nothing to speak (no letters or digits after normalisation).",
        param="input",
        code="invalid_value",
    )


def sentence_stream(
    key: Hashable,
    rows: Sequence[Row],
    synthesize: Callable[[list[Row]], list[np.ndarray]],
    max_batch: int,
    *,
    hop: int,
    input_tokens: int,
) -> Generator[Any, Any, None]:
    """Yield `Batched` jobs for the worker and, between them, each row's audio (float32 mono); then the
    usage: `input_tokens` as given, output tokens = samples // `hop` (the model's frame)."""
    frames = 0
    done = 0
    while done < len(rows):
        group = list(rows[done : done + (1 if done == 0 else max_batch)])  # the first alone: early audio
        audio: list[np.ndarray] = yield Batched(key, group, synthesize, max_batch, many=True)
        for chunk in audio:
            frames += len(chunk) // hop
            yield chunk
        done += len(group)
    yield SpeechUsage(input_tokens=input_tokens, output_tokens=frames)
