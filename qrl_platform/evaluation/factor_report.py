"""Rolling factor report: what the stored ICs, quantile returns and turnover say about a
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
    """Report rows for one `as_of` day; `open_days` are the trading days up to it."""
    return factor_reports(ics, quantile_returns, turnover, open_days, [as_of], windows)


def factor_reports(
    ics: pl.DataFrame,
    quantile_returns: pl.DataFrame,
    turnover: pl.DataFrame,
    open_days: Sequence[dt.date],
    as_of_days: Sequence[dt.date],
    windows: Sequence[int] = WINDOWS,
) -> pl.DataFrame:
    """Report rows for every day of `as_of_days` at once: daily sums, cumulated along the trading days
    `open_days` (which must cover the longest window before the first as-of day), and each window's figure
    is the difference of two cumulated sums — a year of reports costs about what one day costs."""
    calendar = sorted(d for d in open_days if d <= max(as_of_days))
    if not calendar:
        return pl.DataFrame(schema=REPORT_SCHEMA)
    index = (
        pl.DataFrame({"day": calendar}, schema={"day": pl.Date})
        .with_row_index("i")
        .with_columns(pl.col("i").cast(pl.Int64))
    )
    position = {day: i for i, day in enumerate(calendar)}
    targets = pl.DataFrame(
        [
            (
                day,
                position[day],
                window,
                max(position[day] - window + 1, 0),
                calendar[max(position[day] - window + 1, 0)],
            )
            for day in as_of_days
            if day in position
            for window in windows
        ],
        schema={
            "as_of": pl.Date,
            "end_i": pl.Int64,
            "window_days": pl.Int32,
            "start_i": pl.Int64,
            "window_start": pl.Date,
        },
        orient="row",
    )
    if targets.is_empty():
        return pl.DataFrame(schema=REPORT_SCHEMA)

    valid = ics.filter(pl.col("rank_ic").is_not_null() & pl.col("horizon").is_in(list(DECAY_HORIZONS)))
    ic_sums = _windowed(
        valid.group_by("factor_id", "horizon", pl.col("known_on").alias("day")).agg(
            pl.col("rank_ic").sum().alias("s1"),
            (pl.col("rank_ic") ** 2).sum().alias("s2"),
            pl.len().cast(pl.Float64).alias("n"),
            (pl.col("rank_ic") > 0).sum().cast(pl.Float64).alias("pos"),
            pl.col("pearson_ic").sum().alias("sp"),
            pl.col("pearson_ic").count().cast(pl.Float64).alias("np"),
            pl.col("trade_date").min().alias("first_day"),
        ),
        index,
        targets,
        ["factor_id", "horizon"],
        ["s1", "s2", "n", "pos", "sp", "np"],
        earliest="first_day",
    )
    mean = pl.col("s1") / pl.col("n")
    variance = ((pl.col("s2") - pl.col("s1") ** 2 / pl.col("n")) / (pl.col("n") - 1)).clip(lower_bound=0.0)
    stats = (
        ic_sums.filter(pl.col("n") > 0)
        .select(
            "as_of",
            "window_days",
            "window_start",
            "factor_id",
            "horizon",
            pl.col("n").cast(pl.Int64).alias("days"),
            pl.col("first_day").alias("evidence_since"),
            mean.alias("mean_ic"),
            pl.when(pl.col("n") > 1).then(variance.sqrt()).alias("ic_std"),
            (pl.col("pos") / pl.col("n")).alias("positive_share"),
            pl.when(pl.col("np") > 0).then(pl.col("sp") / pl.col("np")).alias("mean_pearson_ic"),
        )
        .with_columns(pl.when(pl.col("ic_std") > 0).then(pl.col("mean_ic") / pl.col("ic_std")).alias("icir"))
    )
    stats = stats.with_columns((pl.col("icir") * pl.col("days").cast(pl.Float64).sqrt()).alias("t_stat"))
    keys = ["as_of", "window_days", "factor_id"]
    decay = stats.filter(pl.col("horizon").is_in(list(DECAY_HORIZONS))).pivot(
        on="horizon", index=keys, values="mean_ic"
    )
    decay = decay.rename({str(h): f"ic_decay_{h}" for h in DECAY_HORIZONS if str(h) in decay.columns})
    direction = stats.filter(pl.col("horizon") == DIRECTION_HORIZON).select(
        *keys,
        pl.when(pl.col("mean_ic") > 0)
        .then(pl.lit("higher"))
        .when(pl.col("mean_ic") < 0)
        .then(pl.lit("lower"))
        .alias("direction"),
    )
    quantile_sums = _windowed(
        quantile_returns.filter(pl.col("mean_return").is_not_null())
        .group_by("factor_id", "horizon", "quantile", pl.col("known_on").alias("day"))
        .agg(pl.col("mean_return").sum().alias("qs"), pl.len().cast(pl.Float64).alias("qn")),
        index,
        targets,
        ["factor_id", "horizon", "quantile"],
        ["qs", "qn"],
    )
    quantiles = (
        quantile_sums.filter(pl.col("qn") > 0)
        .with_columns((pl.col("qs") / pl.col("qn")).alias("q"), pl.format("q{}", "quantile").alias("name"))
        .pivot(on="name", index=[*keys, "horizon"], values="q")
    )
    for level in range(1, QUANTILES + 1):
        if f"q{level}" not in quantiles.columns:
            quantiles = quantiles.with_columns(pl.lit(None, dtype=pl.Float64).alias(f"q{level}"))
    quantiles = quantiles.with_columns((pl.col(f"q{QUANTILES}") - pl.col("q1")).alias("spread"))
    churn_columns = ("top_turnover", "bottom_turnover", "rank_autocorrelation")
    churn = _windowed(
        turnover.group_by("factor_id", pl.col("trade_date").alias("day")).agg(
            *[pl.col(c).sum().alias(f"{c}_s") for c in churn_columns],
            *[pl.col(c).count().cast(pl.Float64).alias(f"{c}_n") for c in churn_columns],
        ),
        index,
        targets,
        ["factor_id"],
        [f"{c}_{k}" for c in churn_columns for k in ("s", "n")],
    ).select(
        *keys,
        *[pl.when(pl.col(f"{c}_n") > 0).then(pl.col(f"{c}_s") / pl.col(f"{c}_n")).alias(c) for c in churn_columns],
    )
    report = (
        stats.filter(pl.col("horizon").is_in(list(HORIZONS)))
        .join(quantiles, on=[*keys, "horizon"], how="left")
        .join(decay, on=keys, how="left")
        .join(churn, on=keys, how="left")
        .join(direction, on=keys, how="left")
    )
    for column, dtype in REPORT_SCHEMA.items():
        if column not in report.columns:
            report = report.with_columns(pl.lit(None, dtype=dtype).alias(column))
    return report.select([pl.col(c).cast(t) for c, t in REPORT_SCHEMA.items()]).sort(
        "as_of", "window_days", "factor_id", "horizon"
    )


def _windowed(
    daily: pl.DataFrame,
    index: pl.DataFrame,
    targets: pl.DataFrame,
    group: list[str],
    sums: list[str],
    *,
    earliest: str | None = None,
) -> pl.DataFrame:
    """Per target (as_of, window) and group: the sums of `sums` over the window's days, and the earliest
    `earliest` date in it. `daily` has `group`, day and the columns; days outside `index` are ignored."""
    rows = daily.join(index, on="day", how="inner").sort([*group, "i"])
    cumulated = rows.select(
        *group,
        "i",
        *[pl.col(c).fill_null(0.0).cum_sum().over(group).alias(c) for c in sums],
        *([pl.col(earliest)] if earliest else []),
    )
    groups = cumulated.select(group).unique()
    frame = groups.join(targets, how="cross")
    # The cumulated sums at the last day on or before the window's end, and before its start.
    at_end = frame.sort("end_i").join_asof(
        cumulated.sort("i").select(*group, pl.col("i").alias("end_i"), *sums),
        on="end_i",
        by=group,
        check_sortedness=False,
    )
    before = cumulated.sort("i").select(
        *group, (pl.col("i") + 1).alias("start_i"), *[pl.col(c).alias(f"{c}_before") for c in sums]
    )
    result = (
        at_end.sort("start_i")
        .join_asof(before, on="start_i", by=group, check_sortedness=False)
        .with_columns([(pl.col(c).fill_null(0.0) - pl.col(f"{c}_before").fill_null(0.0)).alias(c) for c in sums])
    )
    if earliest:
        # The first day with a row on or after the window's start (dates grow with the day index).
        first = cumulated.sort("i").select(*group, pl.col("i").alias("start_i"), pl.col("i").alias("first_i"), earliest)
        result = (
            result.sort("start_i")
            .join_asof(first, on="start_i", by=group, strategy="forward", check_sortedness=False)
            .with_columns(pl.when(pl.col("first_i") <= pl.col("end_i")).then(pl.col(earliest)).alias(earliest))
        )
    return result.select(*group, "as_of", "window_days", "window_start", *sums, *([earliest] if earliest else []))


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


# The IC figures of one factor, window and horizon, in the order a person reads them (ranking, tear sheet).
IC_FIGURES = ("days", "mean_ic", "ic_std", "icir", "t_stat", "positive_share")

# The columns a person reads first when ranking factors (asset metadata, benchmark, closing note).
RANKING_COLUMNS = (
    "rank_group",
    "factor_id",
    "direction",
    *IC_FIGURES,
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
