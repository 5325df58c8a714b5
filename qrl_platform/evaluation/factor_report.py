"""Rolling factor report (issue 20 §2): what the stored ICs, quantile returns and turnover say about a
factor over the last 60 and 250 trading days, as of a day.

Only rows known by the as-of day count (ICs and quantile returns by `known_on`, turnover by its day),
so a report for a past day shows what was known then. Per factor, window and horizon (1/5/20):
mean rank IC, its standard deviation (ddof 1), ICIR = mean / std, t-statistic = ICIR × √days, the
share of days with a positive IC, the mean Pearson IC, the mean of each quantile's daily mean forward
return (q1 lowest factor values … q5 highest) and the top-minus-bottom spread q5 − q1. Per factor and
window: the IC decay (mean rank IC at 1/5/10/20 days), the top and bottom quantile turnover and the rank
autocorrelation (daily means). `direction` says which way is good: `higher` when the 20-day mean rank
IC over the window is positive, `lower` when negative; `evidence_since` the first factor day with an IC
in the window.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from qrl_platform.evaluation.factor_ic import DECAY_HORIZONS, HORIZONS, QUANTILES

WINDOWS = (60, 250)
DIRECTION_HORIZON = 20


def factor_report(
    ics: pl.DataFrame,
    quantile_returns: pl.DataFrame,
    turnover: pl.DataFrame,
    open_days: Sequence[dt.date],
    as_of: dt.date,
    windows: Sequence[int] = WINDOWS,
) -> pl.DataFrame:
    """Report rows for `as_of` from the stored frames; `open_days` are the trading days up to as_of."""
    days = [d for d in open_days if d <= as_of]
    parts = []
    for window in windows:
        known = days[-window:]
        if not known:
            continue
        start = known[0]
        in_window = (pl.col("known_on") >= start) & (pl.col("known_on") <= as_of)
        # Sorted (one contiguous chunk, fixed order) so the float sums do not depend on how many stored
        # partitions were read: a range run and a daily run give bit-identical rows.
        window_ics = ics.filter(in_window).sort("factor_id", "horizon", "trade_date")
        stats = (
            window_ics.filter(pl.col("horizon").is_in(list(HORIZONS)) & pl.col("rank_ic").is_not_null())
            .group_by("factor_id", "horizon")
            .agg(
                pl.col("rank_ic").mean().alias("mean_ic"),
                pl.col("rank_ic").std(ddof=1).alias("ic_std"),
                (pl.col("rank_ic") > 0).mean().alias("positive_share"),
                pl.col("pearson_ic").mean().alias("mean_pearson_ic"),
                pl.len().cast(pl.Int64).alias("days"),
                pl.col("trade_date").min().alias("evidence_since"),
            )
            .with_columns(
                pl.when(pl.col("ic_std") > 0).then(pl.col("mean_ic") / pl.col("ic_std")).alias("icir"),
            )
            .with_columns((pl.col("icir") * pl.col("days").cast(pl.Float64).sqrt()).alias("t_stat"))
        )
        decay = (
            window_ics.filter(pl.col("horizon").is_in(list(DECAY_HORIZONS)))
            .group_by("factor_id")
            .agg(
                [pl.col("rank_ic").filter(pl.col("horizon") == h).mean().alias(f"ic_decay_{h}") for h in DECAY_HORIZONS]
            )
        )
        quantiles = (
            quantile_returns.filter(in_window)
            .sort("factor_id", "horizon", "quantile", "trade_date")
            .group_by("factor_id", "horizon")
            .agg(
                [
                    pl.col("mean_return").filter(pl.col("quantile") == q).mean().alias(f"q{q}")
                    for q in range(1, QUANTILES + 1)
                ]
            )
            .with_columns((pl.col(f"q{QUANTILES}") - pl.col("q1")).alias("spread"))
        )
        churn = (
            turnover.filter((pl.col("trade_date") >= start) & (pl.col("trade_date") <= as_of))
            .sort("factor_id", "trade_date")
            .group_by("factor_id")
            .agg(pl.col("top_turnover", "bottom_turnover", "rank_autocorrelation").mean())
        )
        direction = stats.filter(pl.col("horizon") == DIRECTION_HORIZON).select(
            "factor_id",
            pl.when(pl.col("mean_ic") > 0)
            .then(pl.lit("higher"))
            .when(pl.col("mean_ic") < 0)
            .then(pl.lit("lower"))
            .alias("direction"),
        )
        parts.append(
            stats.join(quantiles, on=["factor_id", "horizon"], how="left")
            .join(decay, on="factor_id", how="left")
            .join(churn, on="factor_id", how="left")
            .join(direction, on="factor_id", how="left")
            .with_columns(
                pl.lit(as_of).alias("as_of"),
                pl.lit(window).cast(pl.Int32).alias("window_days"),
                pl.lit(start).alias("window_start"),
            )
        )
    if not parts:
        return pl.DataFrame(schema=REPORT_SCHEMA)
    return (
        pl.concat(parts, how="diagonal_relaxed")
        .select([pl.col(c).cast(t) for c, t in REPORT_SCHEMA.items()])
        .sort("window_days", "factor_id", "horizon")
    )


REPORT_SCHEMA = {
    "as_of": pl.Date,
    "window_days": pl.Int32,
    "window_start": pl.Date,
    "factor_id": pl.Utf8,
    "horizon": pl.Int32,
    "days": pl.Int64,
    "evidence_since": pl.Date,
    "mean_ic": pl.Float64,
    "ic_std": pl.Float64,
    "icir": pl.Float64,
    "t_stat": pl.Float64,
    "positive_share": pl.Float64,
    "mean_pearson_ic": pl.Float64,
    **{f"q{q}": pl.Float64 for q in range(1, QUANTILES + 1)},
    "spread": pl.Float64,
    **{f"ic_decay_{h}": pl.Float64 for h in DECAY_HORIZONS},
    "top_turnover": pl.Float64,
    "bottom_turnover": pl.Float64,
    "rank_autocorrelation": pl.Float64,
    "direction": pl.Utf8,
}


# The columns a person reads first when ranking factors (asset metadata, benchmark, closing note).
RANKING_COLUMNS = (
    "rank_group",
    "factor_id",
    "direction",
    "days",
    "mean_ic",
    "ic_std",
    "icir",
    "t_stat",
    "positive_share",
    "spread",
    "top_turnover",
    "rank_autocorrelation",
)


def best_and_worst(report: pl.DataFrame, *, window: int = 250, horizon: int = 5, count: int = 5) -> pl.DataFrame:
    """The `count` factors with the highest and the lowest ICIR in one window and horizon."""
    rows = report.filter(
        (pl.col("window_days") == window) & (pl.col("horizon") == horizon) & pl.col("icir").is_not_null()
    )
    ranked = rows.sort("icir", descending=True)
    best = ranked.head(count).with_columns(pl.lit("best").alias("rank_group"))
    worst = ranked.tail(count).reverse().with_columns(pl.lit("worst").alias("rank_group"))
    return pl.concat([best, worst.filter(~pl.col("factor_id").is_in(best["factor_id"].to_list()))])
