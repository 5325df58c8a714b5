"""Corporate actions, source-agnostic: the exchanges' reference-price formula, the Taiwan tick, and how a
range of events is stored one trading-day partition per ex-date.

The reference price of an ex-rights/dividend day is what the exchange computes from the prior close
(TWSE TWT49U's note: 除權息參考價 = (除權息前收盤價 − 息值 + 現金增資認購價 × 現金增資配股率) /
(1 + 無償配股率 + 現金增資配股率)); a capital reduction's is (prior close − cash returned per share) /
(new shares per old share), a par-value change's prior close / exchange ratio.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.calendar import day_status
from qrl_platform.market import schema

# Taiwan tick table (TWSE/TPEx stocks): price below the bound → tick.
TICKS = ((10.0, 0.01), (50.0, 0.05), (100.0, 0.1), (500.0, 0.5), (1000.0, 1.0))
TOP_TICK = 5.0


def tick_size(price: float) -> float:
    """The Taiwan tick at `price`: <10 → 0.01, <50 → 0.05, <100 → 0.1, <500 → 0.5, <1000 → 1, else 5."""
    for bound, tick in TICKS:
        if price < bound:
            return tick
    return TOP_TICK


def dividend_reference_price(
    prior_close: float,
    cash_per_share: float = 0.0,
    free_shares_per_share: float = 0.0,
    rights_shares_per_share: float = 0.0,
    rights_price: float = 0.0,
) -> float:
    """The ex-rights/dividend reference price by the exchanges' published formula (unrounded)."""
    return (prior_close - cash_per_share + rights_price * rights_shares_per_share) / (
        1 + free_shares_per_share + rights_shares_per_share
    )


def reduction_reference_price(prior_close: float, new_shares_per_share: float, cash_per_share: float = 0.0) -> float:
    """A capital reduction's resumption reference price (cash returned, then old/new shares)."""
    return (prior_close - cash_per_share) / new_shares_per_share


def within_a_tick(ours: float, published: float) -> bool:
    """Equal to the tick: the difference is less than one tick at the published price (plus float slack)."""
    return abs(ours - published) < tick_size(published) - 1e-9


def first_trading_day_on_or_after(day: dt.date) -> dt.date:
    while not day_status(day).is_open:
        day += dt.timedelta(days=1)
    return day


def by_partition(actions: pl.DataFrame, days: list[dt.date]) -> dict[dt.date, pl.DataFrame]:
    """Split events over the trading-day partitions `days`: partition D holds the events whose ex_date is D.

    An ex-date the calendar has as closed (a typhoon day, an exchange listing a holiday) is moved to the
    first trading day after it: ex_date means the first day that trades on the new basis, and an event on a
    closed day would otherwise fall between partitions and never be applied."""
    moved = (
        actions.with_columns(pl.col("ex_date").map_elements(first_trading_day_on_or_after, return_dtype=pl.Date))
        if actions.height
        else actions
    )
    moved = schema.conform("corporate_actions", moved, context="ex-dates moved to trading days")
    return {day: moved.filter(pl.col("ex_date") == day).sort("stock_id", "kind") for day in days}
