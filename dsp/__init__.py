"""Audio DSP: decode/encode, resampling, windows, STFT/iSTFT, mel filterbanks, loudness.

Imports nothing from the project, and does no work at import time: the fast-BLAS preload
(`dsp.blas.ensure_fast_blas`) is called explicitly by the CLI and the app factory, before mlx is imported.
"""
