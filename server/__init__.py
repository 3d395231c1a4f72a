"""HTTP/WebSocket layer: the only package that knows FastAPI, wire types and status codes."""
