"""Chip indicators: institutional flows, margin and big-holder factors for many stocks at once.

Windows count *rows* per stock, and a stock has one daily_quotes row per trading day it is listed
(suspended days included, with zero volume and zero flows), so "the last N rows" is "the last N trading
days". Everything is a polars expression over the whole sorted panel; no per-stock loops.

Weekly TDCC shareholding is attached point in time like the fundamental statements: the latest week whose
`published_on` (else the Saturday after the Friday data date) is on or before the day.

Margin is attached point in time within the day: a margin row dated D is published around 21:00, after
the 16:35 strategies, so it is used from the next trading day on (`MARGIN_LAG_DAYS`). "Next trading day"
is the next date of the quotes panel, so a holiday is skipped (Friday's margin feeds Monday, or the day
after a closure). A one-day run and a backfill apply the same rule, so both store the same values.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.factors.chip.factors import CHIP_FACTORS, MARGIN_LAG_DAYS, TRUST_STREAK_CAP

FACTOR_COLUMNS: tuple[str, ...] = tuple(f.factor_id for f in CHIP_FACTORS)
LOOKBACK = max(f.lookback for f in CHIP_FACTORS)

FLOW_WINDOWS = (1, 5, 20)
MARGIN_WINDOWS = (5, 20)
BIG_HOLDER_LEVELS = (12, 15)  # TDCC bands above 400 lots (400,001 shares and up)
SHAREHOLDING_MAX_AGE_DAYS = 21  # TDCC publishes weekly; skips a week around long holidays at most
SHAREHOLDING_PREVIOUS_WEEK_DAYS = 14  # the weekly change compares with a file at most this much older
SHAREHOLDING_HISTORY_DAYS = SHAREHOLDING_MAX_AGE_DAYS + SHAREHOLDING_PREVIOUS_WEEK_DAYS

_FLOW_COLUMNS = ("foreign_net", "trust_net", "dealer_net")
_MARGIN_COLUMNS = ("margin_balance", "margin_limit", "short_balance")


def history_window(first: dt.date, last: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """Partition keys (Friday dates) of shareholding_distribution that days first..last can use."""
    return {"shareholding_distribution": (first - dt.timedelta(days=SHAREHOLDING_HISTORY_DAYS), last)}


def _daily_panel(quotes: pl.DataFrame, flows: pl.DataFrame, margin: pl.DataFrame) -> pl.DataFrame:
    panel = quotes.with_columns(pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date))
    if flows.width:
        flow_rows = flows.select("stock_id", "trade_date", *[pl.col(c).cast(pl.Float64) for c in _FLOW_COLUMNS])
        flow_days = flow_rows.select("trade_date").unique().with_columns(pl.lit(True).alias("_has_flows"))
        panel = panel.join(flow_rows, on=["stock_id", "trade_date"], how="left").join(
            flow_days, on="trade_date", how="left"
        )
        # TWSE T86 lists only stocks some institution traded: on a day with flow data, a stock without a
        # row had zero institutional net. A day with no flow data at all stays null (ingestion gap).
        panel = panel.with_columns(
            [pl.when(pl.col("_has_flows")).then(pl.col(c).fill_null(0.0)).alias(c) for c in _FLOW_COLUMNS]
        ).drop("_has_flows")
    else:
        panel = panel.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in _FLOW_COLUMNS])
    if margin.width:
        margin_rows = margin.select(
            pl.col("stock_id").cast(pl.Utf8),
            pl.col("trade_date").cast(pl.Date),
            *[pl.col(c).cast(pl.Float64) for c in _MARGIN_COLUMNS],
        )
        margin_rows = dated_for_use(margin_rows, panel.get_column("trade_date"), MARGIN_LAG_DAYS)
        panel = panel.join(margin_rows, on=["stock_id", "trade_date"], how="left")
    else:
        panel = panel.with_columns([pl.lit(None, dtype=pl.Float64).alias(c) for c in _MARGIN_COLUMNS])
    return panel.sort("stock_id", "trade_date")


def dated_for_use(rows: pl.DataFrame, trading_dates: pl.Series, lag: int) -> pl.DataFrame:
    """`rows` re-dated to the `lag`-th trading day after their own `trade_date` — the first day a strategy
    may use them. `trading_dates` are the open days (the quotes panel's dates), so holidays are skipped;
    rows with no such later day in the panel (the last day's margin) are dropped: they feed a day not
    being computed."""
    if lag == 0 or rows.is_empty():
        return rows
    days = trading_dates.unique().sort()
    # Index of the first open day strictly after each row's date, then lag − 1 open days further.
    target = days.search_sorted(rows.get_column("trade_date"), side="right").cast(pl.Int64) + (lag - 1)
    keep = target < days.len()
    return rows.filter(keep).with_columns(days.gather(target.filter(keep)).alias("trade_date"))


# The panel is sorted by (stock_id, trade_date), so a rolling sum or shift over the whole column is right
# for every row whose window stays inside its own stock, i.e. whose position in the stock `_idx` is at
# least the window; earlier rows are warm-up and masked to null. This avoids a group-by per factor
# (the same trick as the technical indicators) and is several times faster than `.over("stock_id")`.
_idx = pl.col("_idx")


def _position_in_stock() -> pl.Expr:
    return pl.int_range(pl.len()).over(pl.col("stock_id").rle_id()).alias("_idx")


def _flow_factors() -> list[pl.Expr]:
    exprs = []
    volume = pl.col("volume").cast(pl.Float64)
    for days in FLOW_WINDOWS:
        warm = _idx >= days - 1
        traded = volume.rolling_sum(days, min_samples=days)
        for who in ("foreign", "trust", "dealer"):
            net = pl.col(f"{who}_net").rolling_sum(days, min_samples=days)
            exprs.append(pl.when(warm & (traded > 0)).then(net / traded * 100.0).alias(f"{who}_net_pct_{days}"))
    return exprs


def _trust_streak() -> pl.Expr:
    buying = (pl.col("trust_net") > 0).fill_null(False).cast(pl.Int32)
    # Running count of buying days over the whole column; the streak is that count minus its value at
    # the last reset — a non-buying (or unknown) day, or the row before the stock's first row.
    count = buying.cum_sum()
    reset = pl.when(buying == 0).then(count).when(_idx == 0).then(count - buying)
    streak = count - reset.forward_fill()
    return (
        pl.when(pl.col("trust_net").is_null())
        .then(None)
        .otherwise(pl.min_horizontal(streak, pl.lit(TRUST_STREAK_CAP)))
        .cast(pl.Float64)
        .alias("trust_buy_streak")
    )


def _margin_factors() -> list[pl.Expr]:
    balance = pl.col("margin_balance")
    exprs = [
        pl.when(pl.col("margin_limit") > 0).then(balance / pl.col("margin_limit") * 100.0).alias("margin_utilization"),
        pl.when(balance > 0).then(pl.col("short_balance") / balance * 100.0).alias("short_margin_ratio"),
    ]
    for days in MARGIN_WINDOWS:
        before = balance.shift(days)
        exprs.append(
            pl.when((_idx >= days) & (before > 0)).then((balance / before - 1.0) * 100.0).alias(f"margin_change_{days}")
        )
    return exprs


def big_holder_weeks(shareholding: pl.DataFrame) -> pl.DataFrame:
    """Per stock and TDCC week: stock_id, week, known_from, big_holder_pct, big_holder_pct_change_1w."""
    lo, hi = BIG_HOLDER_LEVELS
    weeks = (
        shareholding.with_columns(pl.col("stock_id").cast(pl.Utf8), pl.col("week").cast(pl.Date))
        .group_by("stock_id", "week")
        .agg(
            pl.col("pct").filter(pl.col("level").is_between(lo, hi)).sum().cast(pl.Float64).alias("big_holder_pct"),
            pl.col("published_on").max().alias("published_on"),
        )
        # TDCC posts the Friday data date on Saturday; use that when the row lacks its publication date.
        .with_columns(pl.coalesce("published_on", pl.col("week") + dt.timedelta(days=1)).alias("known_from"))
        .sort("stock_id", "week")
    )
    previous_week = pl.col("week").shift(1).over("stock_id")
    previous_pct = pl.col("big_holder_pct").shift(1).over("stock_id")
    recent = (pl.col("week") - previous_week) <= dt.timedelta(days=SHAREHOLDING_PREVIOUS_WEEK_DAYS)
    return weeks.with_columns(
        pl.when(recent).then(pl.col("big_holder_pct") - previous_pct).alias("big_holder_pct_change_1w")
    ).select("stock_id", "week", "known_from", "big_holder_pct", "big_holder_pct_change_1w")


def compute(
    quotes: pl.DataFrame,
    flows: pl.DataFrame,
    margin: pl.DataFrame,
    shareholding: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The chip factors for every (stock_id, trade_date) row of `quotes`.

    `quotes`: long daily_quotes-shaped frame (stock_id, trade_date, volume in shares) with each stock's
    consecutive trading days — the rows before the dates you care about are the warm-up.
    `flows`, `margin`, `shareholding`: the canonical institutional_flows, margin_balances and
    shareholding_distribution tables (left-joined; an empty frame gives null factors).
    Returns the rows of `quotes` sorted by stock_id, trade_date with one Float64 column per factor.
    """
    panel = _daily_panel(quotes, flows, margin)
    out = (
        panel.with_columns(_position_in_stock())
        .with_columns(*_flow_factors(), _trust_streak(), *_margin_factors())
        .drop("_idx")
    )
    if shareholding is not None and shareholding.height:
        weeks = big_holder_weeks(shareholding)
        out = (
            out.sort("trade_date")
            .join_asof(
                weeks.sort("known_from"),
                left_on="trade_date",
                right_on="known_from",
                by="stock_id",
                strategy="backward",
                check_sortedness=False,  # both sorted globally on the key
            )
            .with_columns(
                [
                    pl.when(pl.col("trade_date") - pl.col("week") <= dt.timedelta(days=SHAREHOLDING_MAX_AGE_DAYS))
                    .then(pl.col(c))
                    .alias(c)
                    for c in ("big_holder_pct", "big_holder_pct_change_1w")
                ]
            )
            .drop("week", "known_from")
        )
    else:
        out = out.with_columns(
            pl.lit(None, dtype=pl.Float64).alias("big_holder_pct"),
            pl.lit(None, dtype=pl.Float64).alias("big_holder_pct_change_1w"),
        )
    helpers = [c for c in (*_FLOW_COLUMNS, *_MARGIN_COLUMNS) if c not in quotes.columns]
    return (
        out.drop(helpers)
        .with_columns([pl.col(c).cast(pl.Float64) for c in FACTOR_COLUMNS])
        .sort("stock_id", "trade_date")
    )
