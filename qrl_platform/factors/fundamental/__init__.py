"""Fundamental indicators: pure polars over many stocks (no Dagster), point in time."""

from qrl_platform.factors.fundamental.factors import FUNDAMENTAL_FACTORS
from qrl_platform.factors.fundamental.indicators import FACTOR_COLUMNS, compute, history_window

__all__ = ["FACTOR_COLUMNS", "FUNDAMENTAL_FACTORS", "compute", "history_window"]
