"""Point-in-time backward price adjustment from the `corporate_actions` table.

Each event's factor is the exchange's reference price over the prior close. A trade date's adjustment
factor is the product of the factors of that stock's events after the trade date, counting only events
known as of `as_of` (published_on <= as_of and ex_date <= as_of). Prices on or after the last known event
are therefore unchanged, and a backfill for day D reproduces exactly what a live run on D saw.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.market.schema import BadMarketData

DIVIDEND_KINDS = ("cash_dividend", "stock_dividend", "cash_and_stock")
# Plausible factor ranges per kind (lower bound exclusive, upper inclusive). A dividend cannot raise the
# price basis by more than half; a capital reduction raises it (f > 1), up to about ten times. A par-value
# change or a split divides the price by the share ratio: TPEx 5314's 20-for-1 par-value change
# (2025-03-31, NT$10 → NT$0.5) has f = 0.05 exactly, so those kinds get a wider range.
DIVIDEND_BOUNDS = (0.05, 1.5)
REDUCTION_BOUNDS = (0.05, 10.0)
SHARE_RATIO_BOUNDS = (0.01, 100.0)
BOUNDS = {
    **dict.fromkeys(DIVIDEND_KINDS, DIVIDEND_BOUNDS),
    "capital_reduction": REDUCTION_BOUNDS,
    "par_value_change": SHARE_RATIO_BOUNDS,
    "split": SHARE_RATIO_BOUNDS,
}
PRICE_COLUMNS = ("open", "high", "low", "close")


def adjustment_factors(actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Events with published_on <= as_of and ex_date <= as_of → stock_id, ex_date, kind, published_on,
    factor (= reference_price / prior_close). Raises BadMarketData naming stock, ex_date and kind when a factor
    is implausible (dividends: 0.05 < f <= 1.5; capital reduction: 0.05 < f <= 10, usually > 1;
    par-value change / split: 0.01 < f <= 100)."""
    known = actions.filter((pl.col("published_on") <= as_of) & (pl.col("ex_date") <= as_of))
    factors = known.select(
        pl.col("stock_id").cast(pl.Utf8),
        pl.col("ex_date").cast(pl.Date),
        pl.col("kind").cast(pl.Utf8),
        pl.col("published_on").cast(pl.Date),
        (pl.col("reference_price").cast(pl.Float64) / pl.col("prior_close").cast(pl.Float64)).alias("factor"),
    ).sort("stock_id", "ex_date", "kind")
    _reject_implausible(factors)
    return factors


def _reject_implausible(factors: pl.DataFrame) -> None:
    low = pl.col("kind").replace_strict({kind: bounds[0] for kind, bounds in BOUNDS.items()}, default=None)
    high = pl.col("kind").replace_strict({kind: bounds[1] for kind, bounds in BOUNDS.items()}, default=None)
    factor = pl.col("factor")
    implausible = factors.filter(factor.is_null() | factor.is_nan() | low.is_null() | (factor <= low) | (factor > high))
    if implausible.height:
        row = implausible.row(0, named=True)
        bounds = BOUNDS.get(row["kind"], (None, None))
        raise BadMarketData(
            f"corporate_actions: implausible adjustment factor {row['factor']} for stock {row['stock_id']} "
            f"ex_date {row['ex_date']} kind {row['kind']} (reference_price / prior_close must be in "
            f"({bounds[0]}, {bounds[1]}]; {implausible.height} event(s) rejected)"
        )


def adjust_prices(quotes: pl.DataFrame, actions: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """`quotes` has stock_id, trade_date and any of open/high/low/close. Returns the same rows plus
    adj_factor (Float64: product of the factors of that stock's events with trade_date < ex_date <= as_of and
    published_on <= as_of; 1.0 when none) and adj_open/adj_high/adj_low/adj_close = raw × adj_factor for
    each price column present. Backward adjustment: prices on/after the last event are unchanged, so the
    total return from t to T (T <= as_of) is adj_close[T] / adj_close[t] - 1 (dividends reinvested)."""
    factors = adjustment_factors(actions, as_of)
    # Suffix products per stock: cumulative[i] = product of factors of events i, i+1, …; a trade date takes
    # the cumulative factor of the first event strictly after it (an ex-date on a non-trading day still
    # applies to every trade date before it).
    per_day = (
        factors.group_by("stock_id", "ex_date")
        .agg(pl.col("factor").product())
        .sort("stock_id", "ex_date", descending=[False, True])
        .with_columns(pl.col("factor").cum_prod().over("stock_id").alias("adj_factor"))
        .select("stock_id", pl.col("ex_date").alias("_event_date"), "adj_factor")
        .sort("stock_id", "_event_date")
    )
    rows = quotes.with_row_index("_row")
    # as-of join forward: the first event date >= trade_date + 1 day, i.e. ex_date > trade_date.
    probe = rows.select(
        "_row",
        pl.col("stock_id").cast(pl.Utf8),
        (pl.col("trade_date").cast(pl.Date) + pl.duration(days=1)).alias("_event_date"),
    ).sort("stock_id", "_event_date")
    matched = probe.join_asof(
        per_day, on="_event_date", by="stock_id", strategy="forward", check_sortedness=False
    ).select("_row", pl.col("adj_factor").fill_null(1.0).cast(pl.Float64))
    present = [column for column in PRICE_COLUMNS if column in quotes.columns]
    return (
        rows.join(matched, on="_row", how="left")
        .sort("_row")
        .drop("_row")
        .with_columns((pl.col(column) * pl.col("adj_factor")).alias(f"adj_{column}") for column in present)
    )
