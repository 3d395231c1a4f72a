from __future__ import annotations

from collections.abc import Generator

import pytest

from dsp.blas import ensure_fast_blas
from tests.support.data import MISSING_DATA, where_expected

# Explicitly, first: importing the project does not preload OpenBLAS, and it must precede any `import mlx`.
ensure_fast_blas()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None]:
    """One line at the end (after the short summary) when tests skipped for want of the test data."""
    yield
    skipped = terminalreporter.stats.get("skipped", [])
    missing = sum(
        1
        for report in skipped
        if isinstance(report.longrepr, tuple) and MISSING_DATA in str(report.longrepr[2])
    )
    if missing:
        terminalreporter.write_line(
            f"{missing} test{'s' if missing > 1 else ''} skipped: test data not found at {where_expected()}",
            yellow=True,
            bold=True,
        )
