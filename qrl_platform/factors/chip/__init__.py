"""Chip (institutional flow, margin, big-holder) indicators: pure polars over many stocks (no Dagster)."""

from qrl_platform.factors.chip.factors import CHIP_FACTORS, MARGIN_LAG_DAYS, TRUST_STREAK_CAP
from qrl_platform.factors.chip.indicators import FACTOR_COLUMNS, LOOKBACK, compute, history_window

__all__ = [
    "CHIP_FACTORS",
    "FACTOR_COLUMNS",
    "LOOKBACK",
    "MARGIN_LAG_DAYS",
    "TRUST_STREAK_CAP",
    "compute",
    "history_window",
]
