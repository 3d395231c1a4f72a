"""OpenAI's `chunking_strategy` for Whisper: a file cut along speech regions into independent chunks.

Without it a file is one block, decoded window after window: each window starts where the previous
one's last timestamp ended and is conditioned on its text, so windows cannot run together. With speech
regions from a voice-activity detector (`TranscribeOptions.speech`), consecutive regions are packed into
chunks of at most 30 s of speech; a chunk's audio is its regions back to back (the silence between them
dropped: Whisper tends to end a window at a long pause and would lose what follows), and every chunk is an
independent window. They go to the worker as `Batched(many=True)` requests, so one long file fills the
batches that concurrent requests would (encoder passes and decoder steps shared), and silence costs
nothing. Times are mapped back onto the file (`SpeechMap`). A chunk sees the request's prompt but not the
text of the chunks before it, as in faster-whisper's batched pipeline.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.batching import Batched
from models.tasks import Segment, TranscribeOptions, TranscriptionInfo
from models.whisper.constants import HOP_LENGTH, N_FRAMES, N_SAMPLES, SAMPLE_RATE
from models.whisper.mlx_backend import Backend
from models.whisper.timing import TimedSegment
from models.whisper.transcribe import (
    LoopOptions,
    WindowJob,
    WindowResult,
    check_options,
    info,
    is_silence,
    log_mel,
    parse_window,
    prompt_prefix,
    to_segments,
    window_request,
)


def speech_chunks(
    speech: Sequence[tuple[int, int]], n_samples: int, max_samples: int = N_SAMPLES
) -> list[list[tuple[int, int]]]:
    """Pack speech regions (sample ranges, in order) into chunks holding at most `max_samples` of speech
    each. When the next region does not fit, the chunk is cut at its longest pause in its second half
    (a pause between sentences or speakers, rather than just before the region that overflowed), and
    the regions after the cut start the next chunk. A region longer than `max_samples` is cut into
    pieces. Regions are clipped to the audio, and overlapping ones (padding) merged."""
    regions: list[tuple[int, int]] = []
    for start, end in speech:
        start, end = max(0, start), min(n_samples, end)
        if regions and start <= regions[-1][1]:
            start, end = regions[-1][0], max(end, regions[-1][1])
            regions.pop()
        if end > start:
            regions += [(s, min(s + max_samples, end)) for s in range(start, end, max_samples)]
    chunks: list[list[tuple[int, int]]] = []
    current: list[tuple[int, int]] = []
    for region in regions:
        while current and _speech(current) + region[1] - region[0] > max_samples:
            cut = _best_cut(current, max_samples)
            chunks.append(current[:cut])
            current = current[cut:]
        current.append(region)
    if current:
        chunks.append(current)
    return chunks


def _speech(regions: Sequence[tuple[int, int]]) -> int:
    return sum(e - s for s, e in regions)


def _best_cut(regions: list[tuple[int, int]], max_samples: int) -> int:
    """Where to end a full chunk: before the region that follows its longest pause, among the cuts that
    keep at least half a window of speech in it (else after its last region)."""
    best, best_gap = len(regions), -1
    before = 0  # speech before the cut
    for i in range(1, len(regions)):
        before += regions[i - 1][1] - regions[i - 1][0]
        gap = regions[i][0] - regions[i - 1][1]
        if before >= max_samples // 2 and gap > best_gap:
            best, best_gap = i, gap
    return best


@dataclass(frozen=True)
class SpeechMap:
    """A chunk's regions laid back to back: times in the chunk's audio ↔ times in the file."""

    regions: tuple[tuple[int, int], ...]

    @property
    def samples(self) -> int:
        return _speech(self.regions)

    def audio(self, file_audio: np.ndarray) -> np.ndarray:
        return np.concatenate([file_audio[s:e] for s, e in self.regions])

    def to_file(self, t: float) -> float:
        """A time (s) in the chunk's audio → the same instant in the file."""
        offset = 0.0  # chunk time at the start of the current region
        for s, e in self.regions:
            length = (e - s) / SAMPLE_RATE
            if t <= offset + length:
                return s / SAMPLE_RATE + max(0.0, t - offset)
            offset += length
        return self.regions[-1][1] / SAMPLE_RATE  # past the end (a timestamp beyond the speech)

    def place(self, segments: list[TimedSegment]) -> list[TimedSegment]:
        """Segments (and words) decoded on the chunk's audio, moved onto the file's timeline."""
        seek = self.regions[0][0] // HOP_LENGTH
        for seg in segments:
            seg.seek, seg.start, seg.end = seek, self.to_file(seg.start), self.to_file(seg.end)
            for w in seg.words:
                w.start, w.end = self.to_file(w.start), self.to_file(w.end)
        return segments


def transcribe_chunks(
    backend: Backend,
    audio: np.ndarray,
    options: TranscribeOptions,
    loop: LoopOptions = LoopOptions(),
    *,
    max_batch: int = 1,
    seed: int = 0,
) -> Generator[TranscriptionInfo | Segment | Batched, Any, None]:
    """Like `transcribe()`, for `options.speech` given: yields TranscriptionInfo, then the Segments of each
    group of `max_batch` chunks as the group is decoded (so a stream still advances while later chunks
    wait). Without a language, the first chunk is decoded alone to detect it and fixes it for the rest."""
    tok = backend.tokenizer
    check_options(tok, options)
    assert options.speech is not None
    duration = len(audio) / SAMPLE_RATE
    language = options.language if tok.multilingual else "en"
    chunks = speech_chunks(options.speech, len(audio))
    if not chunks:  # no speech at all
        yield info(tok, language, duration)
        return
    maps = [SpeechMap(tuple(c)) for c in chunks]
    prompt = tok.encode(" " + options.prompt.strip()) if options.prompt else []
    prefix = prompt_prefix(tok, prompt, backend.config.n_text_ctx)
    jobs = [
        WindowJob.of(log_mel(m.audio(audio), backend.config.n_mels), prefix, language, options, seed + i)
        for i, m in enumerate(maps)
    ]
    seg_id, done = 0, 0
    while done < len(jobs):
        group = jobs[done : done + (max_batch if language is not None else 1)]
        windows: list[WindowResult] = yield window_request(backend, loop, group, max_batch)
        if language is None:
            language = windows[0].language
            jobs[1:] = [dataclasses.replace(j, language=language) for j in jobs[1:]]
        if done == 0:
            yield info(tok, language, duration)
        for speech_map, window in zip(maps[done : done + len(group)], windows, strict=True):
            if is_silence(window.decoded, loop):
                continue
            frames = min(N_FRAMES, math.ceil(speech_map.samples / HOP_LENGTH))
            timed, _, _ = parse_window(backend, window, 0, frames, options, 0.0)
            for segment in to_segments(tok, window.decoded, speech_map.place(timed), seg_id, options):
                yield segment
                seg_id += 1
        done += len(group)
