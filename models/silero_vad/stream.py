"""Silero VAD over audio that arrives in pieces: the turn detection of a live session (the OpenAI Realtime
`server_vad`: threshold, prefix_padding_ms, silence_duration_ms).

Each `append` runs the network on the windows its samples complete, and only those: the 64 samples of
context before a window and the LSTM state are carried from one append to the next, so the probabilities
are exactly the offline `SileroVadDetector.speech_probabilities` of the whole stream, whatever the pieces
(tests/models/silero_vad/test_stream.py), and the cost per append is its own audio. The probabilities
become turns with silero's hysteresis: speech starts at a window ≥ threshold and stops once it has stayed
below max(threshold − 0.15, 0.01) for `silence_duration_ms`; a turn's audio starts `prefix_padding_ms`
before its first speech window (never before the previous turn's end) and ends at the stop decision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from models.silero_vad.vad import MIN_NEG_THRESHOLD, LstmState
from models.tasks import SpeechStarted, SpeechStopped, TurnOptions

if TYPE_CHECKING:
    from models.silero_vad.family import SileroVadDetector


class VadStream:
    """Turn events from 16-kHz mono float32 audio appended piece by piece (`append`); `samples` counts what
    it has been given, `probabilities` what it has decided on (one per complete 512-sample window)."""

    def __init__(self, detector: SileroVadDetector, options: TurnOptions | None = None) -> None:
        if detector.sample_rate != 16_000:
            raise ValueError("the stream runs the 16 kHz Silero VAD")
        self.detector = detector
        self.window = detector.config.window_size
        self.context = detector.config.context_size
        self.options = options or TurnOptions()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a cleared input buffer): state, context, counts, an open turn."""
        self._pending = np.zeros(self.context, np.float32)  # context of the next window, then its samples
        self._state: LstmState | None = None
        self.samples = 0
        self.windows = 0
        self.speaking = False
        self._quiet_from: int | None = None  # sample where the current silence inside a turn began
        self._last_end = 0
        self.probabilities: list[float] = []

    def configure(self, options: TurnOptions) -> None:
        """New thresholds from the next window on (a session.update mid-stream)."""
        self.options = options

    def append(self, audio: np.ndarray) -> list[SpeechStarted | SpeechStopped]:
        """Feed samples; returns the turn events their complete windows decide, in order."""
        audio = np.asarray(audio, np.float32).reshape(-1)
        self.samples += len(audio)
        buf = np.concatenate([self._pending, audio])
        n = (len(buf) - self.context) // self.window
        if n == 0:
            self._pending = buf
            return []
        span = self.context + self.window
        windows = np.lib.stride_tricks.sliding_window_view(buf[: self.context + n * self.window], span)
        windows = np.ascontiguousarray(windows[:: self.window])
        # numpy front end always: a few windows per append, no MLX (the caller's thread is not the worker)
        probs, self._state = self.detector.scan(self.detector.host_front_end(windows), self._state)
        self._pending = buf[n * self.window :].copy()  # the last context samples and what follows them
        events: list[SpeechStarted | SpeechStopped] = []
        for p in probs.tolist():
            self.probabilities.append(p)
            event = self._decide(p, self.windows)
            self.windows += 1
            if event is not None:
                events.append(event)
        return events

    def _decide(self, p: float, index: int) -> SpeechStarted | SpeechStopped | None:
        o = self.options
        at = index * self.window
        if not self.speaking:
            if p < o.threshold:
                return None
            self.speaking, self._quiet_from = True, None
            start = max(at - o.prefix_padding_ms * 16, self._last_end, 0)
            return SpeechStarted(start)
        if p >= o.threshold:
            self._quiet_from = None
            return None
        if p >= max(o.threshold - 0.15, MIN_NEG_THRESHOLD):
            return None  # between the two thresholds: the turn goes on, a silence does not start
        if self._quiet_from is None:
            self._quiet_from = at
        if at - self._quiet_from < o.silence_duration_ms * 16:  # silero's rule, window by window
            return None
        self.speaking, self._quiet_from, self._last_end = False, None, at
        return SpeechStopped(at)
