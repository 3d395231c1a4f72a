"""Whisper's constants, in one place (openai/whisper's `audio.py` and `decoding.py` values).

Audio: 16 kHz mono, 25-ms Hann frames every 10 ms, 30-s windows of 3000 mel frames; the encoder's second
convolution halves the frame rate, so one audio position (and one timestamp step) is 20 ms.
"""

from __future__ import annotations

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
CHUNK_LENGTH = 30  # seconds of audio in one window
N_SAMPLES = CHUNK_LENGTH * SAMPLE_RATE  # 480000 samples in a window
N_FRAMES = N_SAMPLES // HOP_LENGTH  # 3000 mel frames in a window
INPUT_STRIDE = 2  # mel frames per encoder position (conv2's stride)
N_SAMPLES_PER_TOKEN = HOP_LENGTH * INPUT_STRIDE  # 320
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100: 10 ms per mel frame
TOKENS_PER_SECOND = SAMPLE_RATE // N_SAMPLES_PER_TOKEN  # 50: 20 ms per audio position
TIME_PRECISION = N_SAMPLES_PER_TOKEN / SAMPLE_RATE  # 0.02 s per timestamp token

SAMPLE_LEN = 224  # tokens a window may produce (openai: n_text_ctx // 2)
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # the ladder for temperature 0 ("auto")

assert N_SAMPLES % HOP_LENGTH == 0 and SAMPLE_RATE % N_SAMPLES_PER_TOKEN == 0
