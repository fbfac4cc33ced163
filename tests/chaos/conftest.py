"""Options of the chaos suite: `pytest tests/chaos --chaos-seconds 1800 --chaos-seed 7` for a long run."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos")
    group.addoption(
        "--chaos-seconds", type=float, default=75.0, help="how long faults are injected"
    )
    group.addoption(
        "--chaos-seed", type=int, default=None, help="seed of the fault schedule (random if unset)"
    )
