"""Backward price adjustment from corporate actions (contract stand-in; the corporate-actions branch owns
this module and replaces this file at merge)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.market.schema import BadMarketData

_DIVIDEND_KINDS = ("cash_dividend", "stock_dividend", "cash_and_stock")


def adjustment_factors(actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Events with published_on <= as_of and ex_date <= as_of → stock_id, ex_date, kind, factor
    (= reference_price / prior_close). Raises BadMarketData naming stock, ex_date and kind when a factor
    is implausible (dividends: 0.05 < f <= 1.5; capital reduction / par-value change / split: 0.05 < f <= 10
    with reductions usually > 1)."""
    schema = {"stock_id": pl.Utf8, "ex_date": pl.Date, "kind": pl.Utf8, "factor": pl.Float64}
    if actions.is_empty():
        return pl.DataFrame(schema=schema)
    known = actions.filter((pl.col("published_on") <= as_of) & (pl.col("ex_date") <= as_of)).with_columns(
        (pl.col("reference_price") / pl.col("prior_close")).alias("factor")
    )
    upper = pl.when(pl.col("kind").is_in(_DIVIDEND_KINDS)).then(1.5).otherwise(10.0)
    bad = known.filter(pl.col("factor").is_null() | (pl.col("factor") <= 0.05) | (pl.col("factor") > upper))
    if bad.height:
        row = bad.row(0, named=True)
        raise BadMarketData(
            f"corporate_actions: implausible adjustment factor {row['factor']} for stock {row['stock_id']} "
            f"on ex_date {row['ex_date']} ({row['kind']}: reference_price {row['reference_price']}, "
            f"prior_close {row['prior_close']})"
        )
    return known.select(list(schema)).cast(schema)


def adjust_prices(quotes: pl.DataFrame, actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """`quotes` has stock_id, trade_date and any of open/high/low/close. Returns the same rows plus
    adj_factor (Float64: product of the factors of that stock's events with trade_date < ex_date <= as_of and
    published_on <= as_of; 1.0 when none) and adj_open/adj_high/adj_low/adj_close = raw × adj_factor for
    each price column present. Backward adjustment: prices on/after the last event are unchanged, so the
    total return from t to T (T <= as_of) is adj_close[T] / adj_close[t] - 1 (dividends reinvested)."""
    factors = adjustment_factors(actions, as_of)
    # Per stock, the product of the factors of every event from this one on: a day's factor is the
    # suffix product from its first later event.
    suffix = (
        factors.group_by("stock_id", "ex_date")
        .agg(pl.col("factor").product())
        .sort("stock_id", "ex_date", descending=[False, True])
        .with_columns(pl.col("factor").cum_prod().over("stock_id").alias("suffix_factor"))
        .sort("stock_id", "ex_date")
        .select("stock_id", "ex_date", "suffix_factor")
    )
    order = quotes.with_row_index("_row").sort("stock_id", "trade_date")
    joined = order.join_asof(
        suffix,
        left_on="trade_date",
        right_on="ex_date",
        by="stock_id",
        strategy="forward",
        allow_exact_matches=False,
        check_sortedness=False,
    )
    prices = [c for c in ("open", "high", "low", "close") if c in quotes.columns]
    return (
        joined.with_columns(pl.col("suffix_factor").fill_null(1.0).cast(pl.Float64).alias("adj_factor"))
        .with_columns([(pl.col(c) * pl.col("adj_factor")).alias(f"adj_{c}") for c in prices])
        .sort("_row")
        .select([*quotes.columns, "adj_factor", *[f"adj_{c}" for c in prices]])
    )
