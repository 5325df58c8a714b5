"""Prints the figures every reliability test recorded, as the table in docs/reliability.md."""

from __future__ import annotations

import json
import os

import pytest

from qrl_platform_tests.reliability.figures import RECORDED, Figures, table


@pytest.fixture
def record():
    def _record(figures: Figures) -> Figures:
        RECORDED.append(figures)
        return figures

    return _record


def pytest_terminal_summary(terminalreporter):
    if not RECORDED:
        return
    terminalreporter.write_sep("=", "reliability figures")
    terminalreporter.write_line(table(RECORDED))
    target = os.environ.get("QRL_RELIABILITY_REPORT", "").strip()
    if target:
        with open(target, "w") as handle:
            json.dump([row.as_dict() for row in RECORDED], handle, indent=2, default=str)
