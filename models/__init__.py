"""Model registry, provider, MLX worker and the model families.

Importing it does one thing besides defining names: it raises the default size of MLX's CUDA convolution
plan cache (`MLX_CUDA_CONV_CACHE_SIZE`; MLX's default is 128 plans). MLX takes the value in force when mlx is
first imported — set later, it is ignored (measured) —, so the server imports this package before mlx.
A voice runs a few hundred convolutions per sentence shape, and a plan MLX has to build again costs
milliseconds: with 128, every sentence of a new length evicted the last one's, and Piper on an H200 paid
~250 ms a sentence instead of ~15 (docs/benchmarks.md). A value set in the environment wins. The fast-BLAS
preload (`dsp.blas.ensure_fast_blas`) is the caller's to make before mlx is first imported (the CLI and
`server.app.create_app` do).
"""

import os

CONV_PLAN_CACHE = (
    65536  # plans (each a cuDNN execution plan: kilobytes; 4096 still thrashed on 24 Piper sentences)
)

os.environ.setdefault("MLX_CUDA_CONV_CACHE_SIZE", str(CONV_PLAN_CACHE))
