"""What an operator sees first in the Dagster UI, as plain data (no Dagster import).

Two kinds of metadata, built here and attached by the assets in one or two lines:

* **Plot figures** — flat `name/STG_…` → int/float entries per partition. Dagster's Plots view (the
  asset's Overview → Metadata → Plots) draws one graph per top-level numeric metadata entry, by
  partition or by event time, so one entry per strategy and figure gives one graph per strategy
  (`buy/STG_MOMENTUM_001`, `hit_rate_30d/STG_VALUE_001`, …). A range run gets each day's own figures,
  never the range total.
* **Charts** — markdown with an embedded PNG (`qrl_platform.charts`), attached to the run's LAST
  partition only: a chart shows a trailing window ending there, and attaching it to every partition of
  a 290-day backfill would store 290 copies in the event log. The 15-minute QRL assets attach theirs
  once per Taipei day (`treasury_charts_due`), not to each of the day's 96 runs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

from qrl_platform import charts
from qrl_platform.calendar import QUARTER_HOUR, QUARTER_HOUR_FMT, TAIPEI, previous_trading_days
from qrl_platform.warehouse.schema import qrl_positions, rebalance_plans, strategy_stats

if TYPE_CHECKING:  # types only: the treasury assets use this module without the strategy code
    import sqlalchemy as sa

    from qrl_platform.strategies.runner import StrategyRunSummary
    from qrl_platform.strategies.stats import StatsResult
    from qrl_platform.warehouse import Warehouse

HIT_RATE_PERIOD = 30  # days: the stats window charted and plotted (one of stats.PERIODS)
STATS_CHART_DAYS = 90  # calendar days of hit-rate history and of signals in the basket chart
MISSING_RATE_DAYS = 60  # trading days in the missing-rate heatmap
TREASURY_CHART_DAYS = 3  # days of quarter-hour positions and plans


# ------------------------------------------------------------------------------------- plot figures
def signal_plot_metadata(summary: StrategyRunSummary) -> dict[str, dict[str, int | float]]:
    """partition key → {buy/STG, sell/STG, hold/STG, seconds/STG} from each strategy's execution of that day.

    `seconds` is the day's share of the strategy's evaluation time: a multi-day pass is timed once and
    split evenly over its days (as `strategy_executions.duration_ms` is).
    """
    by_day: dict[str, dict[str, int | float]] = {}
    for row in summary.daily:
        day, strategy_id = row["execution_date"].isoformat(), row["strategy_id"]
        figures = by_day.setdefault(day, {})
        figures[f"buy/{strategy_id}"] = int(row["buy_signals"])
        figures[f"sell/{strategy_id}"] = int(row["sell_signals"])
        figures[f"hold/{strategy_id}"] = int(row["hold_signals"])
        figures[f"seconds/{strategy_id}"] = round(float(row["duration_ms"]) / 1000.0, 4)
    return by_day


def stats_plot_metadata(
    stats: pl.DataFrame, *, period_days: int = HIT_RATE_PERIOD
) -> dict[str, dict[str, float | int]]:
    """partition key → {hit_rate_30d/STG, signals_30d/STG}; a null hit rate (no horizon elapsed) is left out."""
    by_day: dict[str, dict[str, float | int]] = {}
    rows = stats.filter(pl.col("period_days") == period_days).sort("as_of_date", "strategy_id")
    for row in rows.iter_rows(named=True):
        figures = by_day.setdefault(row["as_of_date"].isoformat(), {})
        if row["hit_rate"] is not None:
            figures[f"hit_rate_{period_days}d/{row['strategy_id']}"] = float(row["hit_rate"])
        figures[f"signals_{period_days}d/{row['strategy_id']}"] = int(row["signal_count"])
    return by_day


# ------------------------------------------------------------------------------------- strategy charts
def basket_returns(outcomes: pl.DataFrame, as_of: dt.date, *, window_days: int = STATS_CHART_DAYS) -> pl.DataFrame:
    """Per strategy and BUY/SELL: mean forward return of the signals of (as_of − window, as_of] whose
    horizon has elapsed by `as_of` (both closes known), and how many there were."""
    start = as_of - dt.timedelta(days=window_days)
    return (
        outcomes.filter(
            (pl.col("trade_date") > start)
            & (pl.col("trade_date") <= as_of)
            & (pl.col("exit_date") <= as_of)
            & pl.col("forward_return").is_not_null()
        )
        # A limit-locked signal could not be filled: it has no basket return.
        .filter(~pl.col("unfilled").fill_null(False) if "unfilled" in outcomes.columns else pl.lit(True))
        .group_by("strategy_id", "signal")
        .agg(pl.col("forward_return").mean().alias("mean_forward_return"), pl.len().alias("signals"))
        .sort("strategy_id", "signal")
    )


def hit_rate_history(warehouse: Warehouse, as_of: dt.date, *, days: int = STATS_CHART_DAYS) -> pl.DataFrame:
    """Stored strategy_stats rows of the charted period for as-of days in (as_of − days, as_of]."""
    return warehouse.read_table(
        "strategy_stats",
        where=(strategy_stats.c.period_days == HIT_RATE_PERIOD)
        & (strategy_stats.c.as_of_date > as_of - dt.timedelta(days=days))
        & (strategy_stats.c.as_of_date <= as_of),
    )


OUTCOME_SCHEMA = {
    "strategy_id": pl.Utf8,
    "signal": pl.Utf8,
    "trade_date": pl.Date,
    "exit_date": pl.Date,
    "forward_return": pl.Float64,
    "unfilled": pl.Boolean,
}


def strategy_stats_charts(warehouse: Warehouse, result: StatsResult, as_of: dt.date) -> dict[str, str]:
    """{hit_rate_chart, basket_return_chart} as markdown images for the as-of day `as_of`."""
    outcomes = result.outcomes
    if outcomes is None or outcomes.is_empty():
        outcomes = pl.DataFrame(schema=OUTCOME_SCHEMA)
    hit_rates = charts.hit_rate_chart(hit_rate_history(warehouse, as_of), period_days=HIT_RATE_PERIOD)
    baskets = charts.basket_return_chart(basket_returns(outcomes, as_of), window_days=STATS_CHART_DAYS)
    return {
        "hit_rate_chart": charts.markdown_image(hit_rates, f"hit rate ({HIT_RATE_PERIOD}d) by strategy"),
        "basket_return_chart": charts.markdown_image(baskets, "BUY vs SELL basket forward return"),
    }


# ------------------------------------------------------------------------------------- indicator charts
def missing_rate_days(last_day: dt.date, *, days: int = MISSING_RATE_DAYS) -> list[dt.date]:
    """The trading days the heatmap covers: `days` of them, ending `last_day`."""
    return previous_trading_days(last_day, days)


def missing_rate_window(
    known: pl.DataFrame, stored: Mapping[str, Mapping[str, float]], last_day: dt.date, *, days: int = MISSING_RATE_DAYS
) -> pl.DataFrame:
    """trade_date, factor, missing_rate for the `days` trading days ending `last_day`.

    `known`: the rates this run computed (`quality.missing_rates`). `stored`: partition key → the
    `missing_rates` metadata an earlier materialisation recorded (the same numbers the quality checks
    judged), used for the days this run did not compute. Reading them back costs no frame reads, so a
    one-day run still reads only its lookback window. Days with neither are left out (white).
    """
    window = missing_rate_days(last_day, days=days)
    computed = known.filter(pl.col("trade_date").is_between(window[0], window[-1])).select(RATE_COLUMNS)
    have = set(computed["trade_date"].to_list())
    earlier = [
        {"trade_date": day, "factor": factor, "missing_rate": float(rate)}
        for day in window
        if day not in have and day.isoformat() in stored
        for factor, rate in stored[day.isoformat()].items()
    ]
    schema = {"trade_date": pl.Date, "factor": pl.Utf8, "missing_rate": pl.Float64}
    frames = [computed.cast(schema), pl.DataFrame(earlier, schema=schema)]
    return pl.concat(frames).sort("trade_date", "factor")


RATE_COLUMNS = ["trade_date", "factor", "missing_rate"]


def indicator_charts(
    asset: str,
    factor_ids: Sequence[str],
    last_day: dt.date,
    known: pl.DataFrame,
    stored: Mapping[str, Mapping[str, float]],
) -> dict[str, str]:
    """{missing_rate_heatmap} for the `MISSING_RATE_DAYS` trading days ending `last_day`."""
    rates = missing_rate_window(known, stored, last_day)
    png = charts.missing_rate_heatmap(
        rates,
        factors=factor_ids,
        days=missing_rate_days(last_day),
        title=f"{asset}: missing rate, {MISSING_RATE_DAYS} trading days to {last_day}",
    )
    return {"missing_rate_heatmap": charts.markdown_image(png, f"{asset} missing rates")}


# ------------------------------------------------------------------------------------- treasury charts
def treasury_charts_due(partition_end: dt.datetime) -> bool:
    """Whether the quarter hour ending at `partition_end` carries the QRL charts: the last quarter hour
    of each Taipei day (23:45-24:00 Taipei, UTC key HH:MM 15:45), which the 00:00 Taipei schedule tick
    runs, so it is also the first run after Taipei midnight.

    Once a day rather than every run: each chart is 5-30 KB and an operator looks at the latest one,
    not at 96 near-identical copies a day (about a tenth of a 15-minute run's event-log size). At the
    day's boundary, its trailing window covers whole Taipei days. Decided by the partition (not by the
    clock), so a re-run or backfill of that quarter hour charts it again and no other one does."""
    local = partition_end.astimezone(TAIPEI)
    return local.hour == 0 and local.minute == 0


def latest_charted_quarter_hour(partition_end: dt.datetime) -> str:
    """The key of the latest quarter hour, up to the one ending at `partition_end`, that carries charts."""
    local = partition_end.astimezone(TAIPEI)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight - QUARTER_HOUR).astimezone(dt.UTC).strftime(QUARTER_HOUR_FMT)


def position_chart(
    warehouse: Warehouse, *, symbol: str, mode: str, until: dt.datetime, days: int = TREASURY_CHART_DAYS
) -> dict[str, str]:
    """{position_chart}: the account's stored positions of the last `days` days up to `until`."""
    rows = _account_rows(warehouse, qrl_positions, "as_of", symbol=symbol, mode=mode, until=until, days=days)
    return {"position_chart": charts.markdown_image(charts.position_chart(rows), "QRL position value and PnL")}


def rebalance_chart(
    warehouse: Warehouse, *, symbol: str, mode: str, until: dt.datetime, days: int = TREASURY_CHART_DAYS
) -> dict[str, str]:
    """{rebalance_chart}: the account's stored plans of the last `days` days up to `until`."""
    rows = _account_rows(warehouse, rebalance_plans, "timestamp", symbol=symbol, mode=mode, until=until, days=days)
    return {"rebalance_chart": charts.markdown_image(charts.rebalance_chart(rows), "QRL rebalance plans")}


def _account_rows(
    warehouse: Warehouse, table: sa.Table, time_column: str, *, symbol: str, mode: str, until: dt.datetime, days: int
) -> pl.DataFrame:
    """One account's rows of a treasury table (symbol and exchange mode) in the `days` days up to `until`."""
    at = table.c[time_column]
    return warehouse.read_table(
        table.name,
        where=(table.c.symbol == symbol)
        & (table.c.mode == mode)
        & (at > until - dt.timedelta(days=days))
        & (at <= until),
    )
