"""One registry of factor definitions shared by the technical, fundamental and chip indicators.

Each indicator module declares its factors once, here-shaped; the `factor_metadata` table, the
quality checks (missing rate, ranges) and the strategy validator all read this registry, so there is
no second list to keep in sync.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PRICE_BASES = ("raw", "adjusted", "none")


@dataclass(frozen=True)
class Factor:
    factor_id: str
    module: str  # "M07" | "M08" | "M09"
    name: str
    description: str
    unit: str
    lookback: int  # trading days of history needed before the first valid value
    source_columns: tuple[str, ...]
    version: int = 1
    # Quality bounds used by the blocking checks: values outside [min_value, max_value] fail.
    min_value: float | None = None
    max_value: float | None = None
    # Share of stocks allowed to miss the factor on a day (warm-up, missing source data).
    max_missing_rate: float = 0.2
    tags: tuple[str, ...] = field(default_factory=tuple)
    # Point in time within the day: the factor for day D uses source rows dated `lag_days` trading days
    # earlier, because D's own rows are published after the 16:35 strategies (margin around 21:00). The
    # same rule in live runs and backfills, so a backfill stores exactly what the live run saw.
    lag_days: int = 0
    # Which prices the factor is computed on (docs/total-return.md): "adjusted" — backward-
    # adjusted for dividends and capital changes as of the factor's own day, so returns and crosses have
    # no ex-date jumps; "raw" — the exchange's unadjusted prices (or figures the exchange computes from
    # them, like PE); "none" — no price at all (volumes, flows, fundamentals).
    price_basis: str = "none"

    def __post_init__(self) -> None:
        if self.price_basis not in PRICE_BASES:
            raise ValueError(f"factor {self.factor_id}: price_basis {self.price_basis!r} is not one of {PRICE_BASES}")

    @property
    def source_tables(self) -> frozenset[str]:
        """Raw tables the factor is computed from: `table.column` entries, bare columns are daily_quotes."""
        return frozenset(c.split(".", 1)[0] if "." in c else "daily_quotes" for c in self.source_columns)

    def as_row(self) -> dict:
        return {
            "factor_id": self.factor_id,
            "module": self.module,
            "name": self.name,
            "description": self.description,
            "unit": self.unit,
            "lookback": self.lookback,
            "source_columns": ",".join(self.source_columns),
            "version": self.version,
            "min_value": self.min_value,
            "max_value": self.max_value,
            "max_missing_rate": self.max_missing_rate,
            "lag_days": self.lag_days,
            "price_basis": self.price_basis,
        }
