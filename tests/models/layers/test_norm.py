"""`models/layers/norm.py`: GroupNorm as torch's, and statistics that stay accurate over millions of values."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from models.layers.norm import GroupNorm, mean_var


def test_mean_var_is_accurate_over_millions_of_values() -> None:
    x = (5 * np.random.default_rng(0).standard_normal((2, 2_750_001)) + 1).astype(np.float32)
    mean, var = mean_var(mx.array(x), ddof=1)
    want = x.astype(np.float64)
    np.testing.assert_allclose(np.array(mean), want.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(np.array(var), want.var(-1, ddof=1), rtol=1e-6)


@pytest.mark.reference
@pytest.mark.parametrize("groups", [1, 4])
def test_group_norm_matches_torch(groups: int) -> None:
    import torch

    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8, 5, 12)).astype(np.float32) * 3 + 1  # torch [B, C, F, T]
    ref = torch.nn.GroupNorm(groups, 8)
    with torch.no_grad():
        ref.weight.normal_()
        ref.bias.normal_()
        want = ref(torch.from_numpy(x)).numpy()
    ours = GroupNorm(groups, 8)
    ours.weight, ours.bias = mx.array(ref.weight.detach().numpy()), mx.array(ref.bias.detach().numpy())
    got = np.array(ours(mx.array(x.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, atol=2e-5)
