"""The streaming VAD (`models/silero_vad/stream.py`): probabilities equal to the offline scan of the whole
stream whatever the pieces, and turns (server_vad semantics) where the speech is, on real speech with
real silences around it."""

from __future__ import annotations

import numpy as np
import pytest

from models.silero_vad.family import SileroVadDetector
from models.silero_vad.stream import VadStream
from models.silero_vad.vad import speech_regions
from models.tasks import SpeechStarted, SpeechStopped, TurnOptions, VadOptions
from tests.support.audio import load_audio

RATE = 16_000


def _stream_of(*parts: np.ndarray | float) -> np.ndarray:
    """Audio parts and silences (a float: seconds of near-silence, a little noise) in a row."""
    rng = np.random.default_rng(0)
    out = [
        p if isinstance(p, np.ndarray) else (rng.standard_normal(int(p * RATE)) * 1e-4).astype(np.float32)
        for p in parts
    ]
    return np.concatenate(out).astype(np.float32)


def _feed(vad: VadStream, audio: np.ndarray, sizes: list[int]) -> list[SpeechStarted | SpeechStopped]:
    events, at, i = [], 0, 0
    while at < len(audio):
        n = sizes[i % len(sizes)]
        events += vad.append(audio[at : at + n])
        at, i = at + n, i + 1
    return events


@pytest.mark.parametrize("sizes", [[480], [1], [7, 4000, 513, 31], [len(load_audio("jfk")) * 2]])
def test_probabilities_are_the_offline_scan_whatever_the_pieces(
    detector: SileroVadDetector, sizes: list[int]
) -> None:
    audio = load_audio("jfk")[: 5 * RATE] if sizes == [1] else load_audio("jfk")  # 1-sample pieces: shorter
    vad = VadStream(detector)
    _feed(vad, audio, sizes)
    offline = detector.speech_probabilities(audio)
    full = len(audio) // 512  # the stream decides only on complete windows
    assert vad.windows == full and vad.samples == len(audio)
    np.testing.assert_allclose(np.array(vad.probabilities), offline[:full], atol=2e-6, rtol=0)
    assert max(vad.probabilities) > 0.9 and min(vad.probabilities) < 0.1  # speech and pauses both there


def test_turns_follow_the_speech(detector: SileroVadDetector) -> None:
    """Silence, jfk.wav (11 s; its pauses are under a second), 1.5 s of silence, the first 6 s of
    two_cities, silence, with a 1-s silence_duration: two turns, each starting 300 ms before its speech
    and stopping a second after it (within the 32-ms windows); the same events for 30-ms pieces and for
    one append."""
    jfk, cities = load_audio("jfk"), load_audio("two_cities_16k")[: 6 * RATE]
    audio = _stream_of(1.0, jfk, 1.5, cities, 1.5)
    options = TurnOptions(threshold=0.5, prefix_padding_ms=300, silence_duration_ms=1000)
    events = _feed(VadStream(detector, options), audio, [480])
    assert events == _feed(VadStream(detector, options), audio, [len(audio)])
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped] * 2
    starts = [e.start for e in events if isinstance(e, SpeechStarted)]
    ends = [e.end for e in events if isinstance(e, SpeechStopped)]
    # where the offline detector puts the speech (no padding; silences under 1 s join regions)
    regions = speech_regions(
        detector.speech_probabilities(audio),
        len(audio),
        VadOptions(min_silence_ms=1000, speech_pad_ms=0, min_speech_ms=0),
    )
    assert len(regions) == 2
    for (r_start, r_end), start, end in zip(regions, starts, ends, strict=True):
        assert start == r_start - 300 * 16
        assert 0 <= end - (r_end + 1000 * 16) <= 2 * 512
    # the first turn is jfk.wav, the second two_cities: the 1.5 s between them is in neither
    assert (
        1.0 * RATE - 300 * 16 <= starts[0] < ends[0] < 2.5 * RATE + len(jfk) < starts[1] + 300 * 16 + 2 * 512
    )
    assert starts[1] >= ends[0]


def test_reset_and_new_thresholds(detector: SileroVadDetector) -> None:
    audio = _stream_of(0.5, load_audio("jfk")[: 3 * RATE], 1.0)
    vad = VadStream(detector)
    first = vad.append(audio)
    assert [type(e) for e in first] == [SpeechStarted, SpeechStopped]
    probs = np.array(vad.probabilities)
    vad.reset()
    assert vad.samples == 0 and vad.windows == 0 and not vad.speaking and vad.probabilities == []
    assert vad.append(audio) == first  # as if new: context and LSTM state start from zeros again
    # a stricter threshold starts the turn at the first window that clears it, 300 ms before
    lo, hi = int(np.argmax(probs >= 0.5)), int(np.argmax(probs >= 0.995))
    assert hi > lo and first[0] == SpeechStarted(lo * 512 - 300 * 16)
    vad.reset()
    vad.configure(TurnOptions(threshold=0.995))
    assert vad.append(audio)[0] == SpeechStarted(hi * 512 - 300 * 16)
    vad.reset()
    vad.configure(TurnOptions(silence_duration_ms=2000))  # the trailing second is not enough to stop
    events = vad.append(audio)
    assert [type(e) for e in events] == [SpeechStarted] and vad.speaking
