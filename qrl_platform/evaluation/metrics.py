"""Performance figures of a strategy's daily NAV rows, in polars.

Definitions (those of empyrical, which the tests use as the oracle), on daily returns r over n days,
252 trading days a year: annual return = (Π(1 + r))^(252 / n) − 1; volatility = std(r, ddof 1) × √252;
Sharpe = mean(r) / std(r, ddof 1) × √252 (no risk-free rate); Sortino = mean(r) × 252 /
(√mean(min(r, 0)²) × √252); maximum drawdown = the lowest NAV / running peak − 1, the starting
capital counting as the first peak. Hit rate = winning closed positions / closed positions (PnL net
of costs); turnover = mean daily turnover × 252 (times the book is traded in a year); unfilled share
= unfilled orders / orders (BUY and SELL).
"""

from __future__ import annotations

import math

import polars as pl

TRADING_DAYS_PER_YEAR = 252


def performance(nav: pl.DataFrame) -> pl.DataFrame:
    """One row per strategy from `simulate`'s nav rows (strategy_id, trade_date, daily_return, …)."""
    rows = []
    for (strategy_id,), days in nav.sort("trade_date").group_by(["strategy_id"], maintain_order=True):
        returns = days["daily_return"].drop_nulls()
        rows.append({"strategy_id": strategy_id, "days": days.height, **return_figures(returns), **_activity(days)})
    schema = {
        "strategy_id": pl.Utf8,
        "days": pl.Int64,
        "annual_return": pl.Float64,
        "volatility": pl.Float64,
        "sharpe": pl.Float64,
        "sortino": pl.Float64,
        "max_drawdown": pl.Float64,
        "hit_rate": pl.Float64,
        "turnover": pl.Float64,
        "unfilled_share": pl.Float64,
        "costs": pl.Float64,
        "final_nav": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema).sort("strategy_id")


def return_figures(returns: pl.Series) -> dict[str, float | None]:
    n = returns.len()
    if n == 0:
        return {k: None for k in ("annual_return", "volatility", "sharpe", "sortino", "max_drawdown")}
    growth = (returns + 1.0).cum_prod()
    annual_return = growth[-1] ** (TRADING_DAYS_PER_YEAR / n) - 1.0
    std = returns.std(ddof=1) if n > 1 else None
    root = math.sqrt(TRADING_DAYS_PER_YEAR)
    mean = returns.mean()
    downside = math.sqrt((returns.clip(upper_bound=0.0) ** 2).mean()) * root
    peak = growth.cum_max().clip(lower_bound=1.0)
    return {
        "annual_return": annual_return,
        "volatility": std * root if std is not None else None,
        "sharpe": mean / std * root if std else None,
        "sortino": mean * TRADING_DAYS_PER_YEAR / downside if downside else None,
        "max_drawdown": min(0.0, (growth / peak - 1.0).min()),
    }


def drawdown(nav: pl.Series, capital: float) -> pl.Series:
    """NAV / running peak − 1, the starting capital as the first peak."""
    return nav / nav.cum_max().clip(lower_bound=capital) - 1.0


def _activity(days: pl.DataFrame) -> dict[str, float | None]:
    closed = days["closed_trades"].sum()
    orders = days["buy_orders"].sum() + days["sell_orders"].sum()
    unfilled = days["buy_unfilled"].sum() + days["sell_unfilled"].sum()
    return {
        "hit_rate": days["winning_trades"].sum() / closed if closed else None,
        "turnover": days["turnover"].mean() * TRADING_DAYS_PER_YEAR,
        "unfilled_share": unfilled / orders if orders else None,
        "costs": days["costs"].sum(),
        "final_nav": days["nav"][-1],
    }
