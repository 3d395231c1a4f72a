"""Model registry, provider, MLX worker and the model families.

Importing it does no work: the fast-BLAS preload (`dsp.blas.ensure_fast_blas`) is the caller's to make
before mlx is first imported (the CLI and `server.app.create_app` do).
"""
