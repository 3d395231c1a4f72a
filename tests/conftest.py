from __future__ import annotations

from dsp.blas import ensure_fast_blas

# Explicitly, first: importing the project does not preload OpenBLAS, and it must precede any `import mlx`.
ensure_fast_blas()
