"""Audio DSP: decode/encode, resampling, windows, STFT/iSTFT, mel filterbanks, loudness.

Imports nothing from the project.
"""

from dsp.blas import ensure_fast_blas

ensure_fast_blas()  # must precede the first `import mlx` in the process

__all__ = ["ensure_fast_blas"]
