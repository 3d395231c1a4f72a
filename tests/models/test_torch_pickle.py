"""`models/torch_pickle.py`: torch.save files read as torch reads them, without torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.torch_pickle import load_torch_file


@pytest.mark.reference
def test_dtypes_views_and_parameters_read_as_torch_loads_them(tmp_path: Path) -> None:
    import torch

    base = torch.randn(6, 8)
    tensors = {
        "transposed": base.t(),  # strides (1, 8)
        "offset_view": base[2:, 3:],  # a storage offset
        "half": base.to(torch.float16),
        "bfloat16": base.to(torch.bfloat16),
        "double": base.double(),
        "parameter": torch.nn.Parameter(torch.ones(3)),
        "long": torch.arange(5),
        "empty": torch.zeros(0, 4),
    }
    torch.save(tensors, tmp_path / "t.pt")
    read = load_torch_file(tmp_path / "t.pt")
    loaded = torch.load(tmp_path / "t.pt", weights_only=True)
    for key, tensor in loaded.items():
        expected = tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.numpy()
        np.testing.assert_array_equal(read[key], expected)
        assert read[key].shape == tuple(tensor.shape)
