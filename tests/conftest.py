from __future__ import annotations

import dsp  # noqa: F401  (the BLAS preload must precede any `import mlx`)
