"""tests/demo: `make demo` supervised, and the "metrics warming up" note."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", 'demo: starts the real demo (scripts/demo.sh), about 35 s; -m "not demo" leaves it out'
    )
