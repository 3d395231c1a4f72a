"""HTTP/WebSocket layer: the only package that knows FastAPI, wire types and status codes."""

import dsp  # noqa: F401  (preloads a fast BLAS before anything imports mlx)
