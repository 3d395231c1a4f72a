"""G.711 (ITU-T) μ-law and A-law bytes → float32 samples in [-1, 1]: what the OpenAI Realtime API's
`audio/pcmu` and `audio/pcma` input formats carry (8 kHz mono). One 256-entry table each, built from the
standard's segment formulas."""

from __future__ import annotations

import numpy as np


def _ulaw_table() -> np.ndarray:
    codes = ~np.arange(256, dtype=np.int32) & 0xFF  # the wire byte is bit-inverted
    exponent, mantissa = (codes >> 4) & 0x07, codes & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84  # 14-bit, bias 132
    value = np.where(codes & 0x80, -magnitude, magnitude)
    return (value / 32768.0).astype(np.float32)  # 16-bit scale (±32124) → [-1, 1)


def _alaw_table() -> np.ndarray:
    codes = np.arange(256, dtype=np.int32) ^ 0x55  # even bits inverted on the wire
    exponent, mantissa = (codes >> 4) & 0x07, codes & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
    value = np.where(codes & 0x80, magnitude, -magnitude)
    return (value / 32768.0).astype(np.float32)


ULAW = _ulaw_table()
ALAW = _alaw_table()


def decode_ulaw(data: bytes) -> np.ndarray:
    return ULAW[np.frombuffer(data, np.uint8)]


def decode_alaw(data: bytes) -> np.ndarray:
    return ALAW[np.frombuffer(data, np.uint8)]
