"""Fixtures for the strategy tests: synthetic technical, fundamental and chip frames with the real factor columns.

The Dagster-level plumbing tests (partitions, writes, checks, stats) write plausible random indicator
frames (derived from the demo quotes) straight into the FrameStore: cheap, and they pin what is stored,
not what a strategy means. What the built-ins signal is tested on the real demo chain (raw demo market
→ indicators) in test_builtin_strategies_on_demo_chain.py.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

M07 = (
    "sma_5 sma_10 sma_20 sma_60 sma_120 sma_240 ema_12 ema_26 rsi_14 macd macd_signal macd_hist bb_upper "
    "bb_middle bb_lower atr_14 obv kd_k kd_d kd_j vol_ratio_5 ret_1 ret_5 ret_20 ret_60 dist_52w_high dist_52w_low"
).split()
M08 = "pe pb dividend_yield eps_ttm roe_ttm eps_yoy revenue_yoy revenue_mom revenue_3m_yoy".split()
M09 = (
    "foreign_net_pct_1 foreign_net_pct_5 foreign_net_pct_20 trust_net_pct_1 trust_net_pct_5 trust_net_pct_20 "
    "dealer_net_pct_1 dealer_net_pct_5 dealer_net_pct_20 trust_buy_streak margin_utilization short_margin_ratio "
    "margin_change_5 margin_change_20 big_holder_pct big_holder_pct_change_1w"
).split()
INDICATOR_FACTORS = {"technical_indicators": M07, "fundamental_indicators": M08, "chip_indicators": M09}


def synthetic_indicators(quotes: pl.DataFrame, seed: int = 0) -> dict[str, pl.DataFrame]:
    """Plausible values for every factor, one row per quoted stock and day (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    n = quotes.height
    close = quotes["close"].fill_null(50.0).to_numpy().astype(float)

    def around(scale: float) -> np.ndarray:
        return close * (1 + rng.normal(0, scale, n))

    values: dict[str, np.ndarray] = {
        "sma_5": around(0.02),
        "sma_10": around(0.03),
        "sma_20": around(0.05),
        "sma_60": around(0.08),
        "sma_120": around(0.1),
        "sma_240": around(0.15),
        "ema_12": around(0.03),
        "ema_26": around(0.05),
        "rsi_14": rng.uniform(5, 95, n),
        "macd": rng.normal(0, 1, n),
        "macd_signal": rng.normal(0, 1, n),
        "macd_hist": rng.normal(0, 0.5, n),
        "atr_14": close * rng.uniform(0.005, 0.05, n),
        "obv": rng.normal(0, 1e7, n),
        "kd_k": rng.uniform(0, 100, n),
        "kd_d": rng.uniform(0, 100, n),
        "vol_ratio_5": rng.lognormal(0, 0.4, n),
        "ret_1": rng.normal(0, 0.02, n),
        "ret_5": rng.normal(0, 0.05, n),
        "ret_20": rng.normal(0, 0.1, n),
        "ret_60": rng.normal(0, 0.2, n),
        "dist_52w_high": -rng.uniform(0, 0.5, n),
        "dist_52w_low": rng.uniform(0, 1.0, n),
        "pe": rng.uniform(5, 60, n),
        "pb": rng.uniform(0.5, 8, n),
        "dividend_yield": rng.uniform(0, 8, n),
        "eps_ttm": rng.normal(3, 4, n),
        "roe_ttm": rng.normal(10, 8, n),
        "eps_yoy": rng.normal(5, 40, n),
        "revenue_yoy": rng.normal(5, 30, n),
        "revenue_mom": rng.normal(0, 15, n),
        "revenue_3m_yoy": rng.normal(5, 25, n),
        "trust_buy_streak": rng.integers(0, 8, n).astype(float),
        "margin_utilization": rng.uniform(0, 80, n),
        "short_margin_ratio": rng.uniform(0, 40, n),
        "margin_change_5": rng.normal(0, 5, n),
        "margin_change_20": rng.normal(0, 10, n),
        "big_holder_pct": rng.uniform(20, 90, n),
        "big_holder_pct_change_1w": rng.normal(0, 0.5, n),
    }
    bb_mid = around(0.05)
    width = close * rng.uniform(0.02, 0.15, n)
    values.update({"bb_middle": bb_mid, "bb_upper": bb_mid + width, "bb_lower": bb_mid - width})
    values["kd_j"] = 3 * values["kd_k"] - 2 * values["kd_d"]
    for prefix in ("foreign", "trust", "dealer"):
        for days in (1, 5, 20):
            values[f"{prefix}_net_pct_{days}"] = rng.normal(0, 10, n)
    keys = quotes.select("stock_id", "trade_date")
    return {
        asset: keys.with_columns(pl.Series(f, values[f], dtype=pl.Float64) for f in factors)
        for asset, factors in INDICATOR_FACTORS.items()
    }


def write_synthetic_indicators(
    store, dates: list[dt.date], *, seed: int = 0, drop: dict[str, list[str]] | None = None
) -> None:
    """Indicator frames for `dates` from the stored daily_quotes (materialise those first)."""
    for date in dates:
        quotes = store.read("daily_quotes", date.isoformat())
        frames = synthetic_indicators(quotes, seed=seed + date.toordinal())
        for asset, frame in frames.items():
            store.write(asset, date.isoformat(), frame.drop((drop or {}).get(asset, [])))


@pytest.fixture
def indicator_writer():
    return write_synthetic_indicators
