"""The long-form loop: 30-second windows with seeking, the temperature fallback ladder, no-speech
skipping, prompt conditioning, language detection, segment parsing and word timestamps.

openai/whisper's `transcribe()` does all of this in one 480-line function; here each rule is a small
function and the loop is a generator that yields each window's segments as soon as they are decoded,
so a streaming response can send them while later windows are still being decoded.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import mlx.core as mx
import numpy as np

from models.batching import Batched
from models.errors import InvalidRequest
from models.tasks import Segment, TokenLogprob, TranscribeOptions, TranscriptionInfo, Word
from models.whisper.audio import log_mel_spectrogram
from models.whisper.constants import (
    FALLBACK_TEMPERATURES,
    FRAMES_PER_SECOND,
    HOP_LENGTH,
    INPUT_STRIDE,
    N_FRAMES,
    N_SAMPLES,
    SAMPLE_LEN,
    SAMPLE_RATE,
    TIME_PRECISION,
)
from models.whisper.decoding import (
    DecodedWindow,
    DecodeOptions,
    beam_search_decode,
    compression_ratio,
    greedy_decode,
)
from models.whisper.mlx_backend import Backend
from models.whisper.timing import TimedSegment, align_words, attach_words
from models.whisper.tokenizer import WhisperTokenizer


@dataclass(frozen=True)
class LoopOptions:
    """Thresholds of the long-form loop (openai/whisper's defaults)."""

    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_temperature: float = 0.5


def check_options(tokenizer: WhisperTokenizer, options: TranscribeOptions) -> None:
    lang = options.language
    if lang is not None and lang not in tokenizer.languages:
        raise InvalidRequest(
            f"Unsupported language '{lang}': use an ISO-639-1 code this model knows.", param="language"
        )
    if not tokenizer.multilingual:
        if options.task == "translate":
            raise InvalidRequest(
                "This model is English-only and cannot translate; use a multilingual model "
                "such as whisper-base.",
                param="model",
            )
        if lang not in (None, "en"):
            raise InvalidRequest(
                f"This model is English-only; language '{lang}' is not available.", param="language"
            )


DRAFT_TAIL_S = 0.1  # a draft's segment starting this close to the audio's end (or after it) is dropped
FIT_STEP_FRAMES = 100  # fitted windows are whole seconds (so concurrent ones share shapes and passes)
FIT_MARGIN_FRAMES = 100  # … with at least this much padding after the audio, as a whole window has
FIT_MIN_FRAMES = 500  # … and never shorter: the model misreads very short windows


def draft_tokens(content: int) -> int:
    """Tokens a draft of `content` mel frames may produce: ample for speech (~3 tokens a second, timestamps
    included), short enough that a looping hypothesis costs little."""
    return min(SAMPLE_LEN, 16 + 8 * -(-content // 100))


def repeats(text: str) -> bool:
    """Whether `text` loops: a word said 5 times running, a phrase of 2–3 words 3 times, or of 4 or more
    words twice (a draft over a fitted window sometimes repeats itself instead of ending)."""
    words = ["".join(ch for ch in w.lower() if ch.isalnum()) for w in text.split()]
    for k, times in ((1, 5), (2, 3), (3, 3), *((n, 2) for n in range(4, len(words) // 2 + 1))):
        for i in range(len(words) - k * times + 1):
            if all(words[i + j * k : i + (j + 1) * k] == words[i : i + k] for j in range(1, times)):
                return True
    return False


def fitted_frames(content: int) -> int:
    """Mel frames a fitted window of `content` frames of audio is encoded over (≤ 3000)."""
    frames = -(-(content + FIT_MARGIN_FRAMES) // FIT_STEP_FRAMES) * FIT_STEP_FRAMES
    return min(N_FRAMES, max(FIT_MIN_FRAMES, frames))


@dataclass(frozen=True)
class WindowJob:
    """One 30-s window of one request, as handed to the batched decoder."""

    mel: mx.array  # [3000, n_mels], or fewer frames for a fitted window (`TranscribeOptions.draft`)
    prefix: tuple[int, ...]  # <|startofprev|> + previous text, or ()
    language: str | None  # None: detect on this window
    task: str
    temperatures: tuple[float, ...]
    beam_size: int | None
    seed: int
    sample_len: int = SAMPLE_LEN  # tokens it may produce (fewer for a draft: see `draft_tokens`)

    @classmethod
    def of(
        cls,
        mel: mx.array,
        prefix: tuple[int, ...],
        language: str | None,
        options: TranscribeOptions,
        seed: int,
    ) -> WindowJob:
        """A window of `options`' request: up to 3000 mel frames, zero-padded to 3000 — or, with
        `options.draft`, to `fitted_frames(n)`."""
        n = mel.shape[0]
        frames = fitted_frames(n) if options.draft else N_FRAMES
        if n < frames:
            mel = mx.pad(mel, [(0, frames - n), (0, 0)])
        elif n > frames:
            mel = mel[:frames]
        ladder = options.temperature == 0 and not options.draft
        temperatures = FALLBACK_TEMPERATURES if ladder else (options.temperature,)
        sample_len = draft_tokens(n) if options.draft else SAMPLE_LEN
        return cls(mel, prefix, language, options.task, temperatures, options.beam_size, seed, sample_len)

    def padded(self, frames: int) -> WindowJob:
        return replace(self, mel=mx.pad(self.mel, [(0, frames - self.mel.shape[0]), (0, 0)]))


@dataclass
class WindowResult:
    decoded: DecodedWindow
    language: str
    sot_sequence: list[int]
    features: Any  # this row's cross-attention K/V, for word timing


def window_request(
    backend: Backend, loop: LoopOptions, jobs: WindowJob | list[WindowJob], max_batch: int
) -> Batched:
    """The worker request that decodes `jobs` (one window, or a list answered as a list): the one place its
    batch key is made, so windows of every request to this model with the same loop options share passes
    (the seek loop's and the chunked path's alike)."""
    if isinstance(jobs, WindowJob):
        frames = jobs.mel.shape[0]
    else:  # fitted windows of one request are stacked at the longest one's length
        frames = max(j.mel.shape[0] for j in jobs)
        jobs = [j if j.mel.shape[0] == frames else j.padded(frames) for j in jobs]
    key = ("whisper-windows", id(backend), loop, frames)  # only windows of one length stack
    fn = functools.partial(decode_windows, backend, loop=loop)
    if isinstance(jobs, WindowJob):
        return Batched(key, jobs, fn, max_batch)
    return Batched(key, jobs, fn, max_batch, many=True)


def prompt_prefix(tokenizer: WhisperTokenizer, tokens: Sequence[int], n_text_ctx: int) -> tuple[int, ...]:
    """<|startofprev|> and the last tokens of earlier text (at most half the context), or () for none."""
    return (tokenizer.sot_prev, *tokens[-(n_text_ctx // 2 - 1) :]) if tokens else ()


def log_mel(audio: np.ndarray, n_mels: int) -> mx.array:
    """Mono 16 kHz float32 → [frames + 3000, n_mels] (30 s of zeros appended, as openai does), evaluated."""
    mel = log_mel_spectrogram(mx.array(audio), n_mels, padding=N_SAMPLES)
    mx.eval(mel)
    return mel


def info(tokenizer: WhisperTokenizer, language: str | None, duration: float) -> TranscriptionInfo:
    code = language or "en"
    return TranscriptionInfo(code, tokenizer.languages.get(code, code), duration)


def detect_language(backend: Backend, features: Any) -> list[dict[str, float]]:
    """Language probabilities of each window (multilingual models): the decoder's first step after
    <|startoftranscript|>, over the language tokens."""
    tok = backend.tokenizer
    b = features[0][0].shape[0]
    logits, _ = backend.session(features).prefill([[tok.sot]] * b, [0] * b)
    probs = cast(
        list[list[float]], mx.softmax(logits[:, mx.array(list(tok.all_language_tokens))], axis=-1).tolist()
    )
    return [dict(zip(tok.all_language_codes, row, strict=True)) for row in probs]


def decode_windows(backend: Backend, jobs: Sequence[WindowJob], loop: LoopOptions) -> list[WindowResult]:
    """Decode windows of possibly different requests together: one encoder pass for all, language
    detection where asked, then each row's temperature ladder (rows at the same temperature and search
    share decoding passes; a row whose result looks repetitive or unlikely retries at its next one)."""
    tok = backend.tokenizer
    features = backend.encode(mx.stack([j.mel for j in jobs]))
    languages = [j.language for j in jobs]
    detect = [i for i, lang in enumerate(languages) if lang is None]
    if detect:
        for i, probs in zip(detect, detect_language(backend, _take(features, detect)), strict=True):
            languages[i] = max(probs, key=probs.__getitem__)
    sot_seqs = [list(tok.sot_sequence_for(lang, j.task)) for lang, j in zip(languages, jobs, strict=True)]
    prompts = [[*j.prefix, *sot] for j, sot in zip(jobs, sot_seqs, strict=True)]
    results: list[DecodedWindow | None] = [None] * len(jobs)
    rung = [0] * len(jobs)
    todo = list(range(len(jobs)))
    while todo:
        groups: dict[tuple[float, int | None, int], list[int]] = {}
        for i in todo:
            t = jobs[i].temperatures[rung[i]]
            groups.setdefault((t, jobs[i].beam_size if t == 0 else None, jobs[i].sample_len), []).append(i)
        retry = []
        for (t, beam, sample_len), rows in groups.items():
            session = backend.session(features if len(rows) == len(jobs) else _take(features, rows))
            opts = DecodeOptions(temperature=t, beam_size=beam, sample_len=sample_len)
            row_prompts = [prompts[i] for i in rows]
            sot_index = [len(jobs[i].prefix) for i in rows]
            if beam:
                decoded = beam_search_decode(session, row_prompts, sot_index, tok, opts)
            else:
                key = mx.random.key(jobs[rows[0]].seed * 7919 + rung[rows[0]])
                decoded = greedy_decode(session, row_prompts, sot_index, tok, opts, key=key)
            for i, d in zip(rows, decoded, strict=True):
                d.text = tok.text(d.tokens)
                d.compression_ratio = compression_ratio(d.text)
                results[i] = d
                if _needs_fallback(d, loop) and rung[i] + 1 < len(jobs[i].temperatures):
                    rung[i] += 1
                    retry.append(i)
        todo = sorted(retry)
    return [
        WindowResult(r, lang, sot, _take(features, [i]))  # type: ignore[arg-type]
        for i, (r, lang, sot) in enumerate(zip(results, languages, sot_seqs, strict=True))
    ]


def _take(features: Any, rows: list[int]) -> Any:
    idx = mx.array(rows)
    if isinstance(features, tuple):
        return tuple(_take(f, rows) for f in features)
    if isinstance(features, list):
        return [_take(f, rows) for f in features]
    return features[idx]


def _needs_fallback(d: DecodedWindow, loop: LoopOptions) -> bool:
    too_repetitive = (
        loop.compression_ratio_threshold is not None
        and d.compression_ratio > loop.compression_ratio_threshold
    )
    too_unlikely = loop.logprob_threshold is not None and d.avg_logprob < loop.logprob_threshold
    silence = (
        loop.no_speech_threshold is not None and d.no_speech_prob > loop.no_speech_threshold and too_unlikely
    )
    return (too_repetitive or too_unlikely) and not silence


def is_silence(d: DecodedWindow, loop: LoopOptions) -> bool:
    if loop.no_speech_threshold is None or not d.no_speech_prob > loop.no_speech_threshold:
        return False
    return not (loop.logprob_threshold is not None and d.avg_logprob > loop.logprob_threshold)


def split_segments(
    tokens: list[int], timestamp_begin: int, seek: int, segment_size: int
) -> tuple[list[TimedSegment], int, bool]:
    """Cut a window's tokens into segments at timestamp pairs. Returns (segments, next seek,
    single_timestamp_ending)."""
    time_offset = seek * HOP_LENGTH / SAMPLE_RATE
    is_ts = [t >= timestamp_begin for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    consecutive = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    segments: list[TimedSegment] = []
    if consecutive:
        slices = consecutive + ([len(tokens)] if single_ending else [])
        last = 0
        for cut in slices:
            part = tokens[last:cut]
            start = time_offset + (part[0] - timestamp_begin) * TIME_PRECISION
            end = time_offset + (part[-1] - timestamp_begin) * TIME_PRECISION
            segments.append(TimedSegment(seek, start, end, part))
            last = cut
        if single_ending:
            next_seek = seek + segment_size
        else:
            next_seek = seek + (tokens[last - 1] - timestamp_begin) * INPUT_STRIDE
    else:
        duration = segment_size * HOP_LENGTH / SAMPLE_RATE
        stamps = [t for t in tokens if t >= timestamp_begin]
        if stamps and stamps[-1] != timestamp_begin:
            duration = (stamps[-1] - timestamp_begin) * TIME_PRECISION
        segments.append(TimedSegment(seek, time_offset, time_offset + duration, tokens))
        next_seek = seek + segment_size
    return segments, next_seek, single_ending


def transcribe(
    backend: Backend,
    audio: np.ndarray,
    options: TranscribeOptions,
    loop: LoopOptions = LoopOptions(),
    *,
    max_batch: int = 1,
    seed: int = 0,
) -> Generator[TranscriptionInfo | Segment | Batched, Any, None]:
    """audio: mono float32 at 16 kHz. Yields TranscriptionInfo, then Segments as windows are decoded.

    Each window is requested with `yield Batched(...)`: on the MLX worker, windows of concurrent
    requests for the same model are decoded together; elsewhere wrap the generator in `drive()`.
    """
    tok = backend.tokenizer
    check_options(tok, options)
    mel = log_mel(audio, backend.config.n_mels)  # [frames + 3000 padding, n_mels]
    content_frames = mel.shape[0] - N_FRAMES
    duration = len(audio) / SAMPLE_RATE
    language = options.language if tok.multilingual else "en"
    if content_frames <= 0:  # no audio at all: nothing to decode
        yield info(tok, language, duration)
        return
    info_sent = False
    seek = 0
    all_tokens: list[int] = []
    if options.prompt:
        all_tokens.extend(tok.encode(" " + options.prompt.strip()))
    prompt_reset_since = 0
    last_speech = 0.0
    seg_id = 0
    n_window = 0

    while seek < content_frames:
        segment_size = min(N_FRAMES, content_frames - seek)
        prefix = prompt_prefix(tok, all_tokens[prompt_reset_since:], backend.config.n_text_ctx)
        job = WindowJob.of(mel[seek : seek + segment_size], prefix, language, options, seed + n_window)
        n_window += 1
        window: WindowResult = yield window_request(backend, loop, job, max_batch)
        result, language = window.decoded, window.language
        if not info_sent:
            yield info(tok, language, duration)
            info_sent = True
        if is_silence(result, loop):
            seek += segment_size
            continue
        segments, next_seek, last_speech = parse_window(
            backend, window, seek, segment_size, options, last_speech
        )
        seek = next_seek if next_seek > seek else seek + segment_size  # always move forward
        for s in segments:
            all_tokens.extend(s.tokens)
        out = to_segments(tok, result, segments, seg_id, options)
        if options.draft:  # what a fitted window heard past its audio, or a loop, is not a hypothesis
            end = (seek + segment_size) * HOP_LENGTH / SAMPLE_RATE
            out = [s for s in out if s.start < end - DRAFT_TAIL_S]
            if repeats("".join(s.text for s in out)):
                return
        for segment in out:
            yield segment
            seg_id += 1
        if not loop.condition_on_previous_text or result.temperature > loop.prompt_reset_temperature:
            prompt_reset_since = len(all_tokens)


def parse_window(
    backend: Backend,
    window: WindowResult,
    seek: int,
    segment_size: int,
    options: TranscribeOptions,
    last_speech: float,
) -> tuple[list[TimedSegment], int, float]:
    """A decoded window (starting at mel frame `seek`, `segment_size` frames of audio) as timed segments,
    with words when asked. Returns (segments, next seek, end of the last word so far)."""
    result = window.decoded
    time_offset = seek * HOP_LENGTH / SAMPLE_RATE
    segments, next_seek, single_ending = split_segments(
        result.tokens, backend.tokenizer.timestamp_begin, seek, segment_size
    )
    if options.word_timestamps and result.tokens:
        last_speech = _add_words(
            backend,
            window.features,
            window.sot_sequence,
            segments,
            segment_size,
            time_offset,
            last_speech,
            window.language,
        )
        if not single_ending:
            ends = [w.end for s in segments for w in s.words]
            if ends and ends[-1] > time_offset:
                next_seek = round(ends[-1] * FRAMES_PER_SECOND)
    return segments, next_seek, last_speech


def to_segments(
    tok: WhisperTokenizer,
    result: DecodedWindow,
    segments: list[TimedSegment],
    first_id: int,
    options: TranscribeOptions,
) -> list[Segment]:
    """The API's segments for a window's timed segments, numbered from `first_id`; empty ones dropped."""
    out: list[Segment] = []
    for s in segments:
        text = tok.text(s.tokens)
        if s.start == s.end or not text.strip():
            continue
        out.append(
            Segment(
                id=first_id + len(out),
                seek=s.seek,
                start=round(s.start, 3),
                end=round(s.end, 3),
                text=text,
                tokens=s.tokens,
                temperature=result.temperature,
                avg_logprob=result.avg_logprob,
                compression_ratio=result.compression_ratio,
                no_speech_prob=result.no_speech_prob,
                words=[Word(w.word, w.start, w.end, w.probability) for w in s.words],
                logprobs=_token_logprobs(tok, result, s.tokens) if options.logprobs else [],
            )
        )
    return out


def _token_logprobs(
    tok: WhisperTokenizer, result: DecodedWindow, seg_tokens: list[int]
) -> list[TokenLogprob]:
    # seg_tokens is a contiguous slice of result.tokens: find it to pick the matching logprobs
    n = len(seg_tokens)
    for start in range(len(result.tokens) - n + 1):
        if result.tokens[start : start + n] == seg_tokens:
            lps = result.token_logprobs[start : start + n]
            break
    else:
        return []
    out = []
    for t, lp in zip(seg_tokens, lps, strict=True):
        if t >= tok.eot:
            continue
        b = tok.token_bytes(t)
        out.append(TokenLogprob(b.decode("utf-8", errors="replace"), float(lp), list(b)))
    return out


def _add_words(
    backend: Backend,
    features: Any,
    sot_seq: list[int],
    segments: list[TimedSegment],
    num_frames: int,
    time_offset: float,
    last_speech: float,
    language: str | None,
) -> float:
    tok = backend.tokenizer
    per_segment = [[t for t in s.tokens if t < tok.eot] for s in segments]
    text_tokens = [t for seg in per_segment for t in seg]
    if not text_tokens:
        return last_speech
    tokens = [*sot_seq, tok.no_timestamps, *text_tokens, tok.eot]
    attention, token_probs = backend.alignment(features, tokens, len(text_tokens))
    words, word_tokens = tok.split_to_word_tokens([*text_tokens, tok.eot], language)
    alignment = align_words(attention, text_tokens, token_probs, words, word_tokens, num_frames)
    return attach_words(segments, alignment, per_segment, time_offset, last_speech)
