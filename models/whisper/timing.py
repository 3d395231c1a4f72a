"""Word-level timestamps from cross-attention: the alignment heads' attention over audio frames is
normalised, median-filtered and aligned to the text tokens by dynamic time warping (DTW).

The method follows openai/whisper `timing.py`; the DTW here is vectorised over each row of the cost
matrix (a prefix-sum + running-minimum form of the same recurrence), so it needs no JIT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from models.whisper.constants import TOKENS_PER_SECOND

PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END = ".。!！?？"


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float
    end: float
    probability: float


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd `width` along the last axis, reflect-padded (like scipy)."""
    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    pad = width // 2
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Monotonic alignment path through `cost` [N, M] (moves: diagonal, down, right).
    Returns (row indices, column indices) of the path from (0, 0) to (N-1, M-1)."""
    n, m = cost.shape
    x = cost.astype(np.float64)
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        # acc[i, j] = x + min(acc[i-1, j-1], acc[i-1, j], acc[i, j-1]); unroll the left-dependency:
        # acc[i, j] = S_j + min_{k<=j} (a_k - S_{k-1}), a_k = min(acc[i-1, k-1], acc[i-1, k]).
        a = np.minimum(acc[i - 1, :-1], acc[i - 1, 1:])
        s = np.cumsum(x[i - 1])
        s_prev = np.concatenate(([0.0], s[:-1]))
        acc[i, 1:] = s + np.minimum.accumulate(a - s_prev)
    # trace back, preferring the diagonal on ties (as openai/whisper's argmin order does)
    i, j = n, m
    rows, cols = [], []
    while i > 0 and j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        if i == 1:
            j -= 1
            continue
        if j == 1:
            i -= 1
            continue
        choices = (acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
        step = int(np.argmin(choices))
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def align_words(
    qk: np.ndarray,
    text_tokens: Sequence[int],
    token_probs: np.ndarray | Sequence[float],
    words: Sequence[str],
    word_tokens: Sequence[Sequence[int]],
    num_frames: int,
    *,
    medfilt_width: int = 7,
) -> list[WordTiming]:
    """Time each word.

    qk: [heads, len(text_tokens) + 1, frames] pre-softmax cross-attention scores of the alignment heads at
      the positions that predict each text token and the final EOT (inputs: <|notimestamps|>, text...).
    words / word_tokens: the text split into words (the last entry being the EOT word, as whisper does).
    num_frames: mel frames of real audio in this window (≤ 3000); attention beyond it is ignored.
    """
    if len(text_tokens) == 0 or len(word_tokens) <= 1:
        return []
    w = qk[:, :, : num_frames // 2].astype(np.float64)
    w = np.exp(w - w.max(axis=-1, keepdims=True))
    w /= w.sum(axis=-1, keepdims=True)  # softmax over the frames of real audio
    mean = w.mean(axis=-2, keepdims=True)
    std = w.std(axis=-2, keepdims=True)
    w = (w - mean) / np.maximum(std, 1e-10)
    w = median_filter(w, medfilt_width)
    rows, cols = dtw(-w.mean(axis=0))
    jumps = np.pad(np.diff(rows), (1, 0), constant_values=1).astype(bool)
    jump_times = cols[jumps] / TOKENS_PER_SECOND
    bounds = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
    starts = jump_times[np.minimum(bounds[:-1], len(jump_times) - 1)]
    ends = jump_times[np.minimum(bounds[1:], len(jump_times) - 1)]
    probs = np.asarray(token_probs, dtype=np.float64)
    return [
        WordTiming(word, list(toks), float(s), float(e), float(probs[i:j].mean()) if j > i else 0.0)
        for word, toks, s, e, i, j in zip(
            words[:-1], word_tokens[:-1], starts, ends, bounds[:-1], bounds[1:], strict=True
        )
    ]


def merge_punctuations(
    alignment: list[WordTiming], prepended: str = PREPEND_PUNCTUATION, appended: str = APPEND_PUNCTUATION
) -> None:
    """Attach leading punctuation to the next word and trailing punctuation to the previous, in place."""
    j = len(alignment) - 1
    for i in range(len(alignment) - 2, -1, -1):
        prev, nxt = alignment[i], alignment[j]
        if prev.word.startswith(" ") and prev.word.strip() in prepended:
            nxt.word, nxt.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            prev.word, prev.tokens = "", []
        else:
            j = i
    i = 0
    for j in range(1, len(alignment)):
        prev, nxt = alignment[i], alignment[j]
        if not prev.word.endswith(" ") and nxt.word in appended:
            prev.word, prev.tokens = prev.word + nxt.word, prev.tokens + nxt.tokens
            nxt.word, nxt.tokens = "", []
        else:
            i = j


@dataclass
class TimedSegment:
    """A segment being built in the long-form loop (mutable until it is emitted)."""

    seek: int
    start: float
    end: float
    tokens: list[int]
    words: list[WordTiming] = field(default_factory=list)


def attach_words(
    segments: list[TimedSegment],
    alignment: list[WordTiming],
    text_tokens_per_segment: list[list[int]],
    time_offset: float,
    last_speech_timestamp: float,
) -> float:
    """Distribute aligned words over `segments` (shifting by `time_offset` seconds), clip over-long words
    at sentence and pause boundaries, and reconcile segment bounds with word bounds. Returns the new
    last speech timestamp."""
    durations = np.array([t.end - t.start for t in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = median * 2
    if len(durations):
        for i in range(1, len(alignment)):
            if alignment[i].end - alignment[i].start > longest:
                if alignment[i].word in SENTENCE_END:
                    alignment[i].end = alignment[i].start + longest
                elif alignment[i - 1].word in SENTENCE_END:
                    alignment[i].start = alignment[i].end - longest
    merge_punctuations(alignment)

    k = 0
    for seg, toks in zip(segments, text_tokens_per_segment, strict=True):
        used = 0
        words: list[WordTiming] = []
        while k < len(alignment) and used < len(toks):
            t = alignment[k]
            if t.word:
                words.append(
                    WordTiming(
                        t.word,
                        t.tokens,
                        round(time_offset + t.start, 2),
                        round(time_offset + t.end, 2),
                        t.probability,
                    )
                )
            used += len(t.tokens)
            k += 1
        if words:
            first, last = words[0], words[-1]
            if first.end - last_speech_timestamp > median * 4 and (
                first.end - first.start > longest
                or (len(words) > 1 and words[1].end - first.start > longest * 2)
            ):
                if len(words) > 1 and words[1].end - words[1].start > longest:
                    boundary = max(words[1].end / 2, words[1].end - longest)
                    first.end = words[1].start = boundary
                first.start = max(0.0, first.end - longest)
            if seg.start < first.end and seg.start - 0.5 > first.start:
                first.start = max(0.0, min(first.end - median, seg.start))
            else:
                seg.start = first.start
            if seg.end > last.start and seg.end + 0.5 < last.end:
                last.end = max(last.start + median, seg.end)
            else:
                seg.end = last.end
            last_speech_timestamp = seg.end
        seg.words = words
    return last_speech_timestamp
