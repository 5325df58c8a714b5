"""Factor information coefficients, quantile returns and turnover, as pure polars maths.

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
from dataclasses import dataclass

import numpy as np
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
    # Days as dense numbers 0..n-1 (the order of `day_dates`), for per-day sums with np.bincount.
    day_index = base["trade_date"].rank("dense").cast(pl.Int64).to_numpy() - 1
    day_dates = base["trade_date"].unique().sort()
    returns_by_horizon = {h: base[f"fwd_{h}"].to_numpy() for h in horizons}  # unknown returns are NaN
    # Each horizon's returns sorted by day and value once, shared by every factor's rankings.
    return_layouts = {h: _SortedDays.of(day_index, r) for h, r in returns_by_horizon.items()}
    ics, quantile_parts, turnover_parts = [], [], []
    for factor_id in factor_ids:
        frame = base.select(
            "stock_id",
            "trade_date",
            "previous_date",
            "follows",
            _clean(pl.col(factor_id).cast(pl.Float64)).alias("factor"),
        )
        value = frame["factor"].to_numpy()  # unknown values are NaN here
        layout = _SortedDays.of(day_index, value)
        known_value = ~np.isnan(value)
        bucket = layout.quantile_buckets(value, quantiles)
        for horizon, ret in returns_by_horizon.items():
            both = known_value & ~np.isnan(ret)
            figures = _pair_figures(
                day_index[both],
                len(day_dates),
                value[both],
                ret[both],
                layout.ranks(both)[both],
                return_layouts[horizon].ranks(both)[both],
            )
            ics.append(
                pl.DataFrame(
                    {"trade_date": day_dates, "horizon": horizon, "factor_id": factor_id, **figures},
                    schema_overrides={"horizon": pl.Int32},
                )
            )
            quantile_parts.append(
                _quantile_means(day_index[both], day_dates, bucket[both], ret[both], quantiles).with_columns(
                    pl.lit(horizon).cast(pl.Int32).alias("horizon"), pl.lit(factor_id).alias("factor_id")
                )
            )
        if previous.height:
            frame = frame.with_columns(
                pl.Series("quantile", bucket, nan_to_null=True).cast(pl.Int32),
                pl.Series("rank", layout.ranks(known_value), nan_to_null=True),
            )
            turnover_parts.append(
                _turnover(frame, previous, quantiles).with_columns(pl.lit(factor_id).alias("factor_id"))
            )
    order = ["known_on", "trade_date", "horizon", "factor_id"]
    ic_frame = _concat(ics, IC_SCHEMA, known).sort(order)
    quantile_frame = _concat(quantile_parts, QUANTILE_SCHEMA, known)
    turnover = _concat(turnover_parts, TURNOVER_SCHEMA).sort("trade_date", "factor_id")
    return ic_frame, quantile_frame.sort(*order, "quantile"), turnover


def _pair_figures(
    days: np.ndarray,
    day_count: int,
    factor: np.ndarray,
    forward: np.ndarray,
    factor_ranks: np.ndarray,
    return_ranks: np.ndarray,
) -> dict[str, np.ndarray]:
    """Rank IC, Pearson IC and pair count per day (0..day_count-1) from the pairs where both the factor
    and the return are known: `days` is each pair's day, the ranks are within those pairs that day.

    Both correlations are centred sums per day. Average ranks of n values sum to n(n+1)/2, so their
    mean is exactly (n+1)/2 and the centred ranks are exact multiples of 1/2: the rank sums are exact in
    float64. A column constant across the day's pairs has every centred rank 0, so both ICs are 0/0 —
    undefined (null), decided exactly rather than by a rounded variance of the values."""
    count = np.bincount(days, minlength=day_count)

    def correlation(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xx, yy = np.bincount(days, x * x, day_count), np.bincount(days, y * y, day_count)
        return np.bincount(days, x * y, day_count) / np.sqrt(xx * yy), xx, yy

    with np.errstate(invalid="ignore", divide="ignore"):
        middle = (count[days] + 1) / 2.0
        rank_ic, factor_spread, return_spread = correlation(factor_ranks - middle, return_ranks - middle)
        factor_mean = np.bincount(days, factor, day_count) / count
        return_mean = np.bincount(days, forward, day_count) / count
        pearson_ic, _, _ = correlation(factor - factor_mean[days], forward - return_mean[days])
    pearson_ic[(factor_spread == 0) | (return_spread == 0)] = np.nan
    return {"rank_ic": rank_ic, "pearson_ic": pearson_ic, "n_stocks": count}


def _quantile_means(
    days: np.ndarray, day_dates: pl.Series, bucket: np.ndarray, forward: np.ndarray, quantiles: int
) -> pl.DataFrame:
    """trade_date, quantile, mean_return, n_stocks of the pairs: each day's quantiles that hold a pair."""
    key = days * quantiles + (bucket.astype(np.int64) - 1)
    length = len(day_dates) * quantiles
    count = np.bincount(key, minlength=length)
    held = np.flatnonzero(count)
    return pl.DataFrame(
        {
            "trade_date": day_dates.gather(held // quantiles),
            "quantile": (held % quantiles + 1).astype(np.int32),
            "mean_return": np.bincount(key, forward, length)[held] / count[held],
            "n_stocks": count[held],
        }
    )


@dataclass(frozen=True)
class _SortedDays:
    """One column's rows sorted by day, then value (unknown last): where each run of equal values starts
    and ends, and where its day starts. Rankings of any subset of the rows, and the day's quantiles,
    are then running counts and lookups, not a sort per subset."""

    order: np.ndarray  # row numbers in sorted order
    run_of: np.ndarray | None  # run number of each sorted position; None when every run is one row
    run_starts: np.ndarray
    run_ends: np.ndarray
    run_day_start: np.ndarray  # sorted position where each run's day starts
    day_starts: np.ndarray

    @classmethod
    def of(cls, day_index: np.ndarray, values: np.ndarray) -> _SortedDays:
        order = np.lexsort((values, day_index))  # NaN sorts last within the day
        day, value = day_index[order], values[order]
        new_day = np.ones(len(order), dtype=bool)
        new_day[1:] = day[1:] != day[:-1]
        new_run = new_day.copy()
        new_run[1:] |= value[1:] != value[:-1]  # NaN never equals: each unknown value is a run of its own
        run_starts = np.flatnonzero(new_run)
        day_starts = np.flatnonzero(new_day)
        return cls(
            order=order,
            run_of=None if len(run_starts) == len(order) else np.cumsum(new_run) - 1,
            run_starts=run_starts,
            run_ends=np.append(run_starts[1:], len(order)) - 1,
            run_day_start=day_starts[np.cumsum(new_day)[run_starts] - 1],
            day_starts=day_starts,
        )

    def ranks(self, counted: np.ndarray) -> np.ndarray:
        """Average rank within the day among the rows where `counted` holds, NaN elsewhere (as polars'
        `rank("average").over(day)` on those rows): the counted rows before the run that day plus the
        middle of the run's counted rows, (first + last) / 2 = before + (ties + 1) / 2."""
        counts = counted[self.order]
        through = np.cumsum(counts)
        before = through - counts
        result = np.full(len(self.order), np.nan)
        if self.run_of is None:  # no equal values: each counted row is its own run, ties = 1
            result[self.order[counts]] = ((before - before[self.run_day_start]) + 1.0)[counts]
            return result
        run_before = before[self.run_starts]
        ties = through[self.run_ends] - run_before
        run_rank = (run_before - before[self.run_day_start]) + (ties + 1) / 2.0
        result[self.order[counts]] = run_rank[self.run_of[counts]]
        return result

    def quantile_buckets(self, values: np.ndarray, quantiles: int) -> np.ndarray:
        """pd.qcut's bucket (1..quantiles, NaN where unknown) of each row within its day: the edges are
        the linearly interpolated k/quantiles quantiles of the day's known values (polars' `quantile(...,
        "linear")`), and a value lands one bucket above every edge it exceeds."""
        known = ~np.isnan(values[self.order])
        size = np.add.reduceat(known.astype(np.int64), self.day_starts) if len(self.order) else self.day_starts
        value = values[self.order]
        day_of_position = np.repeat(np.arange(len(self.day_starts)), np.diff(np.append(self.day_starts, len(value))))
        bucket = np.ones(len(value))
        for k in range(1, quantiles):
            position = np.maximum(size - 1, 0) * (k / quantiles)
            low, high = np.floor(position).astype(np.int64), np.ceil(position).astype(np.int64)
            lower, upper = value[self.day_starts + low], value[self.day_starts + high]
            edge = np.where(lower == upper, lower, (position - low) * (upper - lower) + lower)
            bucket += value > edge[day_of_position]
        result = np.full(len(value), np.nan)
        result[self.order[known]] = bucket[known]
        return result


def _concat(parts: list[pl.DataFrame], schema: dict, known: pl.DataFrame | None = None) -> pl.DataFrame:
    """One frame of `schema` (only the (trade_date, horizon) pairs in `known`, when given); a correlation
    that is undefined (a factor constant across stocks that day) is stored as null, not NaN, so it drops
    out of every mean instead of poisoning it."""
    if not parts:
        return pl.DataFrame(schema=schema)
    frame = pl.concat([part.select([c for c in schema if c in part.columns]) for part in parts], how="vertical_relaxed")
    if known is not None:
        frame = frame.join(known, on=["trade_date", "horizon"])
    columns = [pl.col(c).cast(t).fill_nan(None) if t == pl.Float64 else pl.col(c).cast(t) for c, t in schema.items()]
    return frame.select(columns)


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
