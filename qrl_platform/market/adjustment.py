"""Point-in-time backward price adjustment for corporate actions (contract shared with evaluation).

Minimal version of the shared contract written on the evaluation branch so it runs before the
corporate-actions branch is merged; that engineer's module replaces this file at merge.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.market.schema import BadMarketData

_DIVIDENDS = ("cash_dividend", "stock_dividend", "cash_and_stock")


def adjustment_factors(actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Events with published_on <= as_of and ex_date <= as_of → stock_id, ex_date, kind, factor
    (= reference_price / prior_close). Raises BadMarketData naming stock, ex_date and kind when a factor
    is implausible (dividends: 0.05 < f <= 1.5; capital reduction / par-value change / split: 0.05 < f <= 10)."""
    schema = {"stock_id": pl.Utf8, "ex_date": pl.Date, "kind": pl.Utf8, "factor": pl.Float64}
    if actions.is_empty():
        return pl.DataFrame(schema=schema)
    known = actions.filter((pl.col("published_on") <= as_of) & (pl.col("ex_date") <= as_of)).with_columns(
        (pl.col("reference_price") / pl.col("prior_close")).alias("factor")
    )
    upper = pl.when(pl.col("kind").is_in(_DIVIDENDS)).then(1.5).otherwise(10.0)
    bad = known.filter(pl.col("factor").is_null() | (pl.col("factor") <= 0.05) | (pl.col("factor") > upper))
    if bad.height:
        row = bad.row(0, named=True)
        raise BadMarketData(
            f"corporate_actions: implausible adjustment factor {row['factor']} for stock {row['stock_id']} "
            f"on ex_date {row['ex_date']} ({row['kind']})"
        )
    return known.select(list(schema)).cast(schema)


def adjust_prices(quotes: pl.DataFrame, actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """`quotes` has stock_id, trade_date and any of open/high/low/close. Returns the same rows plus
    adj_factor (product of the factors of that stock's events with trade_date < ex_date <= as_of and
    published_on <= as_of; 1.0 when none) and adj_<price> = raw × adj_factor for each price column present."""
    factors = adjustment_factors(actions, as_of)
    prices = [c for c in ("open", "high", "low", "close") if c in quotes.columns]
    if factors.is_empty():
        adjusted = quotes.with_columns(pl.lit(1.0).alias("adj_factor"))
    else:
        keyed = quotes.with_row_index("_row")
        per_row = (
            keyed.select("_row", "stock_id", "trade_date")
            .join(factors.select("stock_id", "ex_date", "factor"), on="stock_id", how="inner")
            .filter(pl.col("ex_date") > pl.col("trade_date"))
            .group_by("_row")
            .agg(pl.col("factor").product().alias("adj_factor"))
        )
        adjusted = (
            keyed.join(per_row, on="_row", how="left")
            .sort("_row")
            .drop("_row")
            .with_columns(pl.col("adj_factor").fill_null(1.0))
        )
    return adjusted.with_columns([(pl.col(c) * pl.col("adj_factor")).alias(f"adj_{c}") for c in prices])
