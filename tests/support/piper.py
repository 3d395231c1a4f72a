"""Piper test constants: the package's voice file and fixed IPA phrases (as espeak-ng en-us writes them)."""

from __future__ import annotations

ONNX_NAME = "en_US-joe-medium.onnx"

PHRASES = (
    "ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɔɡ.",  # The quick brown fox jumps over the lazy dog.
    "hˈaʊ ɑːɹ juː?",  # How are you?
    "ɪt wʌz ðə bˈɛst ʌv tˈaɪmz, ɪt wʌz ðə wˈɜːst ʌv tˈaɪmz.",  # It was the best of times, ...
)
