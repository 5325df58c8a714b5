"""Counts for the reliability suite: CI-sized by default, full with QRL_RELIABILITY_FULL=1.

Each reliability test asserts its own invariants (nothing lost, nothing duplicated, no order twice)
and also records one row of figures on its test report; the suite's conftest (qrl_platform_tests/conftest.py)
prints them as a table at the end of the run and, when QRL_RELIABILITY_REPORT names a file, writes them
there as JSON.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field


def count(name: str, *, ci: int, full: int) -> int:
    """`name` from the environment if set, else `full` under QRL_RELIABILITY_FULL=1, else `ci`."""
    raw = os.environ.get(name, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name}: {raw!r} is not a whole number") from None
        if value < 1:
            raise ValueError(f"{name}: must be at least 1, got {value}")
        return value
    return full if os.environ.get("QRL_RELIABILITY_FULL", "").strip() in {"1", "true", "yes"} else ci


@dataclass
class Figures:
    target: str
    faults: str  # what was injected, with counts
    runs: int
    lost: int
    duplicated: int
    placed_twice: int | None = None  # only for order targets
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


# The name of the test-report property that carries one recorded row (as JSON).
FIGURES_PROPERTY = "reliability_figures"


def table(rows: list[Figures]) -> str:
    header = ("target", "faults injected", "runs", "lost", "duplicated", "orders placed twice", "notes")
    lines = [
        (
            row.target,
            row.faults,
            str(row.runs),
            str(row.lost),
            str(row.duplicated),
            "-" if row.placed_twice is None else str(row.placed_twice),
            row.notes,
        )
        for row in rows
    ]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)
