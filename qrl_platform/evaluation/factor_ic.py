"""Factor information coefficients, quantile returns and turnover (issue 20 §1), as pure polars maths.

Semantics (the asset's description repeats them):

* The **forward total return** of a stock from trading day D to D+h is adj_close[D+h] / adj_close[D] − 1,
  with prices adjusted by `adjust_prices(..., as_of=E)` where E = D+h, the day it becomes known. So the
  row for (D, h) is the same whether it is computed live on E or in a backfill years later.
* **Rank IC** = cross-sectional Spearman correlation of the factor on D with that return over the
  stocks where both are known and finite; **Pearson IC** the same with values; `n_stocks` their count.
  An IC that is undefined (the factor or the return constant across those stocks) is null.
* Rows are filed under `known_on` = E: the `factor_ic` partition for E holds every (D, h) with D+h = E.
* **Quantiles**: per factor and day the stocks with a value are cut into 5 quantiles by
  `pd.qcut`'s rule (linear-interpolated edges, bins (e_{k−1}, e_k], the minimum in the first);
  `quantile_returns` is each quantile's mean forward return (filed like the ICs).
* **Turnover** of quantile q on E: the share of E's names in q that were not in q on the previous
  trading day; **rank autocorrelation**: the Pearson correlation of the factor's daily ranks on E and
  on the previous trading day, over the stocks ranked on both. Both are known on E.

These match alphalens-reloaded (`factor_information_coefficient`, `mean_return_by_quantile`,
`quantile_turnover`, `factor_rank_autocorrelation`) on the same frame; the tests compare them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from qrl_platform.market.adjustment import adjust_prices

HORIZONS = (1, 5, 20)
DECAY_HORIZONS = (1, 5, 10, 20)  # the IC decay bars need 10 as well; every one is computed and stored
QUANTILES = 5

IC_SCHEMA = {
    "known_on": pl.Date,
    "trade_date": pl.Date,
    "horizon": pl.Int32,
    "factor_id": pl.Utf8,
    "rank_ic": pl.Float64,
    "pearson_ic": pl.Float64,
    "n_stocks": pl.Int64,
}
QUANTILE_SCHEMA = {
    "known_on": pl.Date,
    "trade_date": pl.Date,
    "horizon": pl.Int32,
    "factor_id": pl.Utf8,
    "quantile": pl.Int32,
    "mean_return": pl.Float64,
    "n_stocks": pl.Int64,
}
TURNOVER_SCHEMA = {
    "trade_date": pl.Date,
    "factor_id": pl.Utf8,
    "top_turnover": pl.Float64,
    "bottom_turnover": pl.Float64,
    "rank_autocorrelation": pl.Float64,
}


def known_day_pairs(
    open_days: Sequence[dt.date], known_days: Sequence[dt.date], horizons: Sequence[int]
) -> pl.DataFrame:
    """(trade_date D, horizon h, known_on E) for every E in `known_days` and h whose D lies in `open_days`.

    `open_days` are the trading days (sorted, covering the h days before each E)."""
    index = {day: i for i, day in enumerate(open_days)}
    rows = []
    for known_on in known_days:
        if known_on not in index:
            continue
        for horizon in horizons:
            start = index[known_on] - horizon
            if start >= 0:
                rows.append((open_days[start], horizon, known_on))
    return pl.DataFrame(rows, schema={"trade_date": pl.Date, "horizon": pl.Int32, "known_on": pl.Date}, orient="row")


def forward_returns(
    quotes: pl.DataFrame,
    actions: pl.DataFrame,
    open_days: Sequence[dt.date],
    known_days: Sequence[dt.date],
    horizons: Sequence[int] = DECAY_HORIZONS,
) -> pl.DataFrame:
    """stock_id, trade_date, horizon, known_on, forward_return: the total return from D to E = D+h,
    adjusted point in time as of E (each E separately, so a backfill equals the live day).

    `quotes`: stock_id, trade_date, close over the trading days D..E; `actions`: corporate actions."""
    pairs = known_day_pairs(open_days, known_days, horizons)
    schema = {
        "stock_id": pl.Utf8,
        "trade_date": pl.Date,
        "horizon": pl.Int32,
        "known_on": pl.Date,
        "forward_return": pl.Float64,
    }
    if pairs.is_empty() or quotes.is_empty():
        return pl.DataFrame(schema=schema)
    closes = quotes.select("stock_id", "trade_date", "close")
    if actions.is_empty():  # no event can change a ratio: one pass over the whole range
        return _returns(closes.with_columns(pl.col("close").alias("adj_close")), pairs).select(list(schema))
    parts = []
    for (known_on,), pairs_of_day in pairs.group_by(["known_on"], maintain_order=True):
        days = [*pairs_of_day["trade_date"].to_list(), known_on]
        window = closes.filter(pl.col("trade_date").is_in(days))
        parts.append(_returns(adjust_prices(window, actions, known_on), pairs_of_day))
    return pl.concat(parts).select(list(schema))


def _returns(adjusted: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    entry = adjusted.select("stock_id", "trade_date", pl.col("adj_close").alias("entry"))
    exit_ = adjusted.select("stock_id", pl.col("trade_date").alias("known_on"), pl.col("adj_close").alias("exit"))
    return (
        pairs.join(entry, on="trade_date")
        .join(exit_, on=["stock_id", "known_on"])
        .with_columns(pl.when(pl.col("entry") > 0).then(pl.col("exit") / pl.col("entry") - 1.0).alias("forward_return"))
    )


def _clean(value: pl.Expr) -> pl.Expr:
    """Missing or non-finite values count as unknown."""
    return pl.when(value.is_finite()).then(value)


def factor_evaluation(
    factors: pl.DataFrame,
    returns: pl.DataFrame,
    factor_ids: Sequence[str],
    open_days: Sequence[dt.date],
    *,
    turnover_days: Sequence[dt.date] = (),
    quantiles: int = QUANTILES,
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(ics, quantile_returns, turnover) from a wide factor frame (stock_id, trade_date, one column per
    factor) and `forward_returns` rows. Turnover and rank autocorrelation are computed for the factor days
    in `turnover_days` (each against the previous day in `open_days`, which `factors` must also cover).

    One factor at a time against the returns pivoted wide (one column per horizon): a year of 1,800
    stocks is 0.5 M rows, and joining every factor to every horizon's rows at once would be gigabytes."""
    horizons = sorted(returns["horizon"].unique().to_list())
    known = returns.select("trade_date", "horizon", "known_on").unique()
    wide_returns = returns.select(
        "stock_id", "trade_date", pl.format("fwd_{}", "horizon").alias("name"), _clean(pl.col("forward_return"))
    ).pivot(on="name", index=["stock_id", "trade_date"], values="forward_return")
    for horizon in horizons:
        if f"fwd_{horizon}" not in wide_returns.columns:
            wide_returns = wide_returns.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"fwd_{horizon}"))
    previous = _previous_days(open_days, turnover_days)
    # Sorted by stock then day, so each row's previous trading day is the row above when `follows` holds:
    # turnover then needs a shift, not a join per factor.
    base = (
        factors.select("stock_id", "trade_date", *factor_ids)
        .join(wide_returns, on=["stock_id", "trade_date"], how="left")
        .join(previous, on="trade_date", how="left")
        .sort("stock_id", "trade_date")
        .with_columns(
            (
                (pl.col("stock_id") == pl.col("stock_id").shift(1))
                & (pl.col("trade_date").shift(1) == pl.col("previous_date"))
            )
            .fill_null(False)
            .alias("follows")
        )
    )
    # Each horizon's return ranked once per day, shared by every factor (see _information_coefficients).
    base = base.with_columns(
        [pl.col(f"fwd_{h}").rank("average").over("trade_date").alias(f"rank_{h}") for h in horizons]
    )
    columns = [
        "stock_id",
        "trade_date",
        "previous_date",
        "follows",
        *[f"{p}_{h}" for h in horizons for p in ("fwd", "rank")],
    ]
    ics, quantile_parts, turnover_parts = [], [], []
    for factor_id in factor_ids:
        value = _clean(pl.col(factor_id).cast(pl.Float64))
        frame = _with_quantiles(base.select(*columns, value.alias("factor")), quantiles)
        for horizon in horizons:
            ret = f"fwd_{horizon}"
            pair = pl.col("factor").is_not_null() & pl.col(ret).is_not_null()
            ics.append(_information_coefficients(frame, factor_id, horizon))
            quantile_parts.append(
                frame.filter(pair)
                .group_by("trade_date", "quantile")
                .agg(
                    pl.lit(horizon).cast(pl.Int32).alias("horizon"),
                    pl.lit(factor_id).alias("factor_id"),
                    pl.col(ret).mean().alias("mean_return"),
                    pl.len().cast(pl.Int64).alias("n_stocks"),
                )
            )
        if previous.height:
            turnover_parts.append(
                _turnover(frame, previous, quantiles).with_columns(pl.lit(factor_id).alias("factor_id"))
            )
    order = ["known_on", "trade_date", "horizon", "factor_id"]
    ic_frame = _concat([f.join(known, on=["trade_date", "horizon"]) for f in ics], IC_SCHEMA).sort(order)
    quantile_frame = _concat([f.join(known, on=["trade_date", "horizon"]) for f in quantile_parts], QUANTILE_SCHEMA)
    turnover = _concat(turnover_parts, TURNOVER_SCHEMA).sort("trade_date", "factor_id")
    return ic_frame, quantile_frame.sort(*order, "quantile"), turnover


def _information_coefficients(frame: pl.DataFrame, factor_id: str, horizon: int) -> pl.DataFrame:
    """Rank and Pearson IC of one factor and horizon per day.

    The rank IC is the Pearson correlation of the two columns' ranks among the stocks where both are
    known. On a day where every stock with the factor also has the return and vice versa, those are the
    day's ranks already computed (`rank` of the factor, `rank_<h>` of the return); only days where the two
    sets differ (a stock suspended on one of the two days) rank again on the pairs."""
    ret = f"fwd_{horizon}"
    pair = pl.col("factor").is_not_null() & pl.col(ret).is_not_null()
    differs = pl.col("factor").is_null() != pl.col(ret).is_null()
    days = frame.group_by("trade_date").agg(
        pl.lit(horizon).cast(pl.Int32).alias("horizon"),
        pl.lit(factor_id).alias("factor_id"),
        pl.corr("rank", f"rank_{horizon}").alias("rank_ic"),
        pl.corr("factor", ret).alias("pearson_ic"),
        pair.sum().cast(pl.Int64).alias("n_stocks"),
        differs.any().alias("differs"),
    )
    uneven = days.filter(pl.col("differs"))["trade_date"]
    if uneven.len():
        exact = (
            frame.filter(pl.col("trade_date").is_in(uneven.implode()))
            .group_by("trade_date")
            .agg(pl.corr("factor", ret, method="spearman").alias("exact_ic"))
        )
        days = days.join(exact, on="trade_date", how="left").with_columns(
            pl.when(pl.col("differs")).then(pl.col("exact_ic")).otherwise(pl.col("rank_ic")).alias("rank_ic")
        )
    return days.drop("differs", "exact_ic", strict=False)


def _concat(parts: list[pl.DataFrame], schema: dict) -> pl.DataFrame:
    """One frame of `schema`; a correlation that is undefined (a factor constant across stocks that day)
    is stored as null, not NaN, so it drops out of every mean instead of poisoning it."""
    if not parts:
        return pl.DataFrame(schema=schema)
    columns = [pl.col(c).cast(t).fill_nan(None) if t == pl.Float64 else pl.col(c).cast(t) for c, t in schema.items()]
    return pl.concat([part.select(list(schema)) for part in parts], how="vertical_relaxed").select(columns)


def _with_quantiles(frame: pl.DataFrame, quantiles: int) -> pl.DataFrame:
    """Adds `quantile` (1..quantiles, pd.qcut's bins per day) and `rank` (the day's average rank) of `factor`."""
    value = pl.col("factor")
    edges = [value.quantile(k / quantiles, interpolation="linear").over("trade_date") for k in range(1, quantiles)]
    bucket = pl.sum_horizontal([(value > edge).cast(pl.Int32) for edge in edges]) + 1
    return frame.with_columns(
        pl.when(value.is_not_null()).then(bucket).cast(pl.Int32).alias("quantile"),
        value.rank("average").over("trade_date").alias("rank"),
    )


def _previous_days(open_days: Sequence[dt.date], days: Sequence[dt.date]) -> pl.DataFrame:
    previous_of = {day: open_days[i - 1] for i, day in enumerate(open_days) if i > 0}
    pairs = [(day, previous_of[day]) for day in days if day in previous_of]
    return pl.DataFrame(pairs, schema={"trade_date": pl.Date, "previous_date": pl.Date}, orient="row")


def _turnover(frame: pl.DataFrame, previous: pl.DataFrame, quantiles: int) -> pl.DataFrame:
    """Top/bottom quantile turnover and rank autocorrelation of one factor on each day of `previous`.
    `frame` is sorted by stock then day, with `follows` true where the row above is the previous trading day."""
    before = pl.col("follows")
    both = frame.with_columns(
        pl.when(before).then(pl.col("quantile").shift(1)).alias("previous_quantile"),
        pl.when(before).then(pl.col("rank").shift(1)).alias("previous_rank"),
    ).filter(pl.col("previous_date").is_not_null())

    def turnover(level: int) -> pl.Expr:
        members = pl.col("quantile") == level
        left = members & (pl.col("previous_quantile").is_null() | (pl.col("previous_quantile") != level))
        return pl.when(members.sum() > 0).then(left.sum() / members.sum())

    return both.group_by("trade_date").agg(
        turnover(quantiles).alias("top_turnover"),
        turnover(1).alias("bottom_turnover"),
        pl.corr("rank", "previous_rank").alias("rank_autocorrelation"),
    )
