"""The `record` fixture: each reliability test's row of figures, for the table the suite's conftest prints
at the end of the run (docs/reliability.md)."""

from __future__ import annotations

import json

import pytest

from qrl_platform_tests.reliability.figures import FIGURES_PROPERTY, Figures


@pytest.fixture
def record(request):
    """Puts a row of figures on the test's report. A report reaches the process that prints the summary
    whichever process ran the test (pytest-xdist runs tests in worker processes), a module list would not."""

    def _record(figures: Figures) -> Figures:
        request.node.user_properties.append((FIGURES_PROPERTY, json.dumps(figures.as_dict(), default=str)))
        return figures

    return _record
