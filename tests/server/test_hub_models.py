"""Models users download from Hugging Face, end to end on real weights: the tiny.en checkpoint re-laid
as a transformers repo and as an mlx-community repo, served by a local stand-in of the Hub, fetched by
huggingface_hub into the cache, converted once, and used through the OpenAI SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlx.core as mx
import openai
import pytest

from models.families import builtin_models
from models.registry import Registry
from models.weights import model_dir
from models.whisper.config import WhisperConfig
from models.whisper.convert import transformers_name_map
from server.app import create_app
from server.settings import Settings
from tests.support.data import REFERENCE, normalize, speech
from tests.support.fake_hub import FakeHub, point_hub_at
from tests.support.live import serve

pytestmark = pytest.mark.slow

HF_REPO = "openai/whisper-tiny.en"
MLX_REPO = "mlx-community/whisper-tiny.en-mlx"


def _safetensors(tensors: dict[str, mx.array], path: Path) -> bytes:
    mx.save_safetensors(str(path), tensors)
    return path.read_bytes()


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    tmp = tmp_path_factory.mktemp("repos")
    spec = Registry(builtin_models()).get("whisper-tiny.en")
    native = model_dir(spec, tmp / "cache")
    config = WhisperConfig.from_dict(json.loads((native / "config.json").read_text()))
    weights = mx.load(str(native / "model.safetensors"))
    assert isinstance(weights, dict)
    tokenizer = (native / "tokenizer.json").read_bytes()

    # transformers layout: HF names, torch conv layout, HF config + generation config
    names = transformers_name_map(config.n_audio_layer, config.n_text_layer)
    hf = {
        names[k]: (v.transpose(0, 2, 1) if k in ("encoder.conv1.weight", "encoder.conv2.weight") else v)
        for k, v in weights.items()
    }
    hf_config = {
        "model_type": "whisper",
        "num_mel_bins": config.n_mels,
        "max_source_positions": config.n_audio_ctx,
        "d_model": config.n_audio_state,
        "encoder_attention_heads": config.n_audio_head,
        "encoder_layers": config.n_audio_layer,
        "vocab_size": config.n_vocab,
        "max_target_positions": config.n_text_ctx,
        "decoder_attention_heads": config.n_text_head,
        "decoder_layers": config.n_text_layer,
    }
    generation = {"alignment_heads": [list(p) for p in config.alignment_heads or ()]}
    transformers_repo = {
        "config.json": json.dumps(hf_config).encode(),
        "generation_config.json": json.dumps(generation).encode(),
        "model.safetensors": _safetensors(hf, tmp / "hf.safetensors"),
        "tokenizer.json": tokenizer,
    }
    # mlx-community layout: mlx-examples names, no encoder sinusoids, no tokenizer.json
    mlx_weights = {k: v for k, v in weights.items() if k != "encoder.positional_embedding"}
    mlx_config = {k: v for k, v in config.to_dict().items() if k.startswith("n_")}
    mlx_config["alignment_heads"] = [list(p) for p in config.alignment_heads or ()]
    mlx_repo = {
        "config.json": json.dumps(mlx_config).encode(),
        "weights.safetensors": _safetensors(mlx_weights, tmp / "mlx.safetensors"),
    }
    return {HF_REPO: transformers_repo, MLX_REPO: mlx_repo}


@pytest.fixture
def hub(
    repos: dict[str, dict[str, bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        for repo_id, files in repos.items():
            fake.add_repo(repo_id, files)
        point_hub_at(monkeypatch, tmp_path, fake.url)
        yield fake


MODELS = [
    {
        "id": "hf-tiny.en",
        "family": "whisper",
        "task": "transcription",
        "format": "transformers",
        "repo": HF_REPO,
    },
    {
        "id": "mlx-tiny.en",
        "family": "whisper",
        "task": "transcription",
        "format": "mlx-community",
        "repo": MLX_REPO,
    },
]


def test_hub_models_transcribe_through_the_sdk(hub: FakeHub, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", models=MODELS)
    with (
        serve(create_app(settings)) as base,
        openai.OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0, timeout=300) as client,
    ):
        ids = {m.id for m in client.models.list().data}
        assert {"hf-tiny.en", "mlx-tiny.en"} <= ids
        audio = ("jfk.wav", speech("jfk.wav").read_bytes())
        for model in ("hf-tiny.en", "mlx-tiny.en"):
            text = client.audio.transcriptions.create(model=model, file=audio).text
            assert normalize(text) == normalize(REFERENCE["jfk"]), (model, text)
    downloaded = [path for _method, path in hub.requests if "/resolve/" in path]
    assert any(p.endswith("/model.safetensors") for p in downloaded)
    assert any(p.endswith("/weights.safetensors") for p in downloaded)
    assert (tmp_path / "cache" / "hub" / "models--openai--whisper-tiny.en").is_dir()
    converted = sorted(p.name for p in (tmp_path / "cache" / "converted").iterdir())
    assert any(n.startswith("hf-tiny.en-") for n in converted) and any(
        n.startswith("mlx-tiny.en-") for n in converted
    )


def test_cli_download_shows_progress_then_works_offline(hub: FakeHub, tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text(
        "[[models]]\n"
        'id = "mlx-tiny.en"\nfamily = "whisper"\ntask = "transcription"\nformat = "mlx-community"\n'
        f'repo = "{MLX_REPO}"\n'
    )
    cache = tmp_path / "cache"
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_TELEMETRY": "1"}
    cmd = [
        sys.executable,
        "-m",
        "server.cli",
        "download",
        "mlx-tiny.en",
        "--config",
        str(config),
        "--cache-dir",
        str(cache),
    ]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert first.returncode == 0, first.stderr
    assert "mlx-tiny.en: " in first.stdout and "%" in first.stderr  # tqdm progress went to stderr
    out_dir = Path(first.stdout.strip().split(": ", 1)[1])
    assert (out_dir / "model.safetensors").exists() and (out_dir / "tokenizer.json").exists()
    # offline, from the cache alone
    hub.requests.clear()
    offline = subprocess.run(
        cmd, env={**env, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600, check=False
    )
    assert offline.returncode == 0, offline.stderr
    assert hub.requests == []
    # and a model never fetched fails offline with a clear message, not a traceback
    config.write_text(config.read_text().replace("mlx-tiny.en", "other").replace(MLX_REPO, "nobody/else"))
    missing = subprocess.run(
        [*cmd[:4], "other", *cmd[5:]],
        env={**env, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "offline" in missing.stderr.lower()
