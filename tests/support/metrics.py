"""Reading the server's Prometheus text in tests."""

from __future__ import annotations

import httpx


def metric(base_url: str, name: str) -> float:
    """The value of the unlabelled sample `name` on `{base_url}/metrics`."""
    for line in httpx.get(f"{base_url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exported")
