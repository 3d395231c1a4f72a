"""Model registry, provider, MLX worker and the model families. Imports `dsp` first for the BLAS preload."""

import dsp  # noqa: F401  (preloads a fast BLAS before anything imports mlx)
