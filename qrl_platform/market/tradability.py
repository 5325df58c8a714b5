"""Daily price limits and trading restrictions per stock (contract shared with evaluation).

Minimal version of the shared contract written on the evaluation branch so it runs before the
total-return branch is merged; that engineer's module replaces this file at merge.
"""

from __future__ import annotations

import polars as pl

# Taiwan stock tick sizes: (price below, tick).
_TICKS = ((10.0, 0.01), (50.0, 0.05), (100.0, 0.1), (500.0, 0.5), (1000.0, 1.0), (float("inf"), 5.0))


def _tick(price: pl.Expr) -> pl.Expr:
    expr = pl.lit(_TICKS[-1][1])
    for below, tick in reversed(_TICKS[:-1]):
        expr = pl.when(price < below).then(tick).otherwise(expr)
    return expr


def tradability(
    quotes: pl.DataFrame,
    actions: pl.DataFrame,
    previous_close: pl.DataFrame | None = None,
    notices: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per quotes row: stock_id, trade_date, limit_up, limit_down (±10 % of the day's reference
    price — the corporate action's reference_price on an ex_date, else the previous close — rounded to
    the Taiwan tick), at_limit_up, at_limit_down, is_suspended, is_disposition, is_full_cash_delivery."""
    frame = quotes.with_row_index("_row").sort("stock_id", "trade_date")
    frame = frame.with_columns(pl.col("close").shift(1).over("stock_id").alias("_previous"))
    if previous_close is not None and previous_close.height:
        earlier = previous_close.select("stock_id", pl.col("close").alias("_given"))
        first = pl.col("trade_date") == pl.col("trade_date").min().over("stock_id")
        frame = frame.join(earlier, on="stock_id", how="left").with_columns(
            pl.when(first).then(pl.col("_given")).otherwise(pl.col("_previous")).alias("_previous")
        )
    if actions.height:
        references = actions.group_by("stock_id", "ex_date").agg(pl.col("reference_price").last().alias("_ref"))
        frame = frame.join(references, left_on=["stock_id", "trade_date"], right_on=["stock_id", "ex_date"], how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias("_ref"))
    reference = pl.coalesce("_ref", "_previous")
    up, down = reference * 1.1, reference * 0.9
    # Rounded to whole ticks, inside the ±10 % band (limit up down to a tick, limit down up to one).
    frame = frame.with_columns(
        ((up / _tick(up) + 1e-9).floor() * _tick(up)).round(2).alias("limit_up"),
        ((down / _tick(down) - 1e-9).ceil() * _tick(down)).round(2).alias("limit_down"),
    )
    for flag in ("is_disposition", "is_full_cash_delivery"):
        if notices is not None and flag in notices.columns:
            marks = (
                notices.filter(pl.col(flag)).select("stock_id", "trade_date", pl.lit(True).alias(f"_{flag}")).unique()
            )
            frame = frame.join(marks, on=["stock_id", "trade_date"], how="left")
            frame = frame.with_columns(pl.col(f"_{flag}").fill_null(False).alias(flag))
        else:
            frame = frame.with_columns(pl.lit(False).alias(flag))
    suspended = pl.col("is_suspended").fill_null(False) if "is_suspended" in quotes.columns else pl.lit(False)
    return frame.sort("_row").select(
        "stock_id",
        "trade_date",
        pl.col("limit_up").cast(pl.Float64),
        pl.col("limit_down").cast(pl.Float64),
        (pl.col("close") >= pl.col("limit_up")).fill_null(False).alias("at_limit_up"),
        (pl.col("close") <= pl.col("limit_down")).fill_null(False).alias("at_limit_down"),
        suspended.alias("is_suspended"),
        "is_disposition",
        "is_full_cash_delivery",
    )
