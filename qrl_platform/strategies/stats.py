"""UPDATE_STRATEGY_STATS (seed JOB-M11-003): per-strategy counts, confidence and hit rate.

Definitions (hand-checkable, see the tests):

* A signal's **exit date** is the `horizon_days`-th trading day after its trade date (XTAI calendar
  plus overrides); signals are made after the close, so the close of the trade date is the entry price.
* Its **forward return** is a **total return**: adj_close(exit) / adj_close(trade date) − 1 on prices
  adjusted backward for every corporate action (cash and stock dividends, capital reductions,
  par-value changes, splits) with trade date < ex_date <= exit date (`market.adjustment.adjust_prices`).
  A BUY held across an ex-dividend date is not a loss of the dividend, nor a capital reduction a
  gain. `raw_forward_return` keeps close(exit) / close(trade date) − 1 beside it, for comparison.
* **Point in time: adjusted as of the exit date.** The adjustment uses the events published on or
  before the exit date. Events after the exit date would multiply both closes by the same factor
  and cancel, and an event with ex_date <= exit date is published before its ex_date, so "as of the
  exit date" gives the same number as any later day would — but it is fixed the day the signal is
  judged: what the stats of day E say (every judged signal has exit <= E) is exactly what a backfill
  of E computes, whatever was published after E.
* **Unfilled**: a BUY whose trade date closed at limit-up, or a SELL at limit-down, could not have been
  filled at that close (`market.tradability`; limits from the corporate action's reference price on
  an ex-date, else the previous close). It gets `unfilled` = true and a null `hit`: it is excluded
  from the hit rate and counted in `unfilled_signals` instead.
* A BUY **hits** when the forward (total) return is > 0, a SELL when it is < 0 (0 is a miss for both).
  HOLD rows are never judged.
* For an as-of date D and a period of P calendar days (7/30/90), the window is the signals with
  trade date in (D − P, D]. `signal_count` counts every stored signal row in it (BUY/SELL/HOLD);
  `avg_confidence` averages the BUY and SELL rows (how sure the strategy is when it acts — HOLD
  rows would drown it); `evaluated_signals` are the filled BUY/SELL rows whose exit date is on or
  before D and whose two closes are known; `hit_rate` = hits / evaluated_signals (null when none);
  `unfilled_signals` are the BUY/SELL rows of the window at their limit (known on the trade date).
  Only signals whose horizon has elapsed count, so a 7-day window of a 20-day strategy has no hit
  rate yet — by design, not a bug.
* `total_executions`, `total_signals`, `last_execution_at` are as of D (executions and signals on
  or before D), so a backfilled day shows what was known then. The `strategies` summary columns are
  refreshed with the source's SQL (all time).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from qrl_platform.calendar import previous_trading_days, trading_days
from qrl_platform.market.adjustment import adjustment_factors
from qrl_platform.market.tradability import tradability
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import strategies, strategy_executions, strategy_signals, strategy_stats

PERIODS = (7, 30, 90)
ACTING = ("BUY", "SELL")
# Stock ids are digits and letters (the exchanges' codes), so a comma never occurs inside one.
STOCK_SEPARATOR = ","


# ------------------------------------------------------------------------------------- pure maths
def signal_outcomes(
    signals: pl.DataFrame,
    closes: pl.DataFrame,
    horizons: dict[str, int],
    open_days: Sequence[dt.date],
    *,
    actions: pl.DataFrame | None = None,
    limits: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per BUY/SELL signal: exit_date, raw_forward_return, forward_return (total return), unfilled and hit
    (null when a close is missing or the signal was unfilled). See the module docstring.

    `signals`: strategy_id, stock_id, trade_date, signal. `closes`: stock_id, trade_date, close (raw).
    `open_days`: the trading days covering the signals and their exits, sorted.
    `actions`: corporate_actions rows (none: total return = raw return).
    `limits`: stock_id, trade_date, at_limit_up, at_limit_down (`market.tradability`; none: all filled).
    """
    calendar = pl.DataFrame({"trade_date": sorted(open_days)}, schema={"trade_date": pl.Date}).with_row_index(
        "day_index"
    )
    exits = calendar.select(pl.col("day_index").alias("exit_index"), pl.col("trade_date").alias("exit_date"))
    horizon = pl.DataFrame(
        {"strategy_id": list(horizons), "horizon_days": list(horizons.values())},
        schema={"strategy_id": pl.Utf8, "horizon_days": pl.UInt32},
    )
    entry = closes.select("stock_id", "trade_date", pl.col("close").alias("entry_close"))
    exit_close = closes.select("stock_id", pl.col("trade_date").alias("exit_date"), pl.col("close").alias("exit_close"))
    outcomes = (
        signals.filter(pl.col("signal").is_in(["BUY", "SELL"]))
        .join(horizon, on="strategy_id", how="inner")
        .join(calendar, on="trade_date", how="left")
        .with_columns((pl.col("day_index") + pl.col("horizon_days")).alias("exit_index"))
        .join(exits, on="exit_index", how="left")
        .join(entry, on=["stock_id", "trade_date"], how="left")
        .join(exit_close, on=["stock_id", "exit_date"], how="left")
    )
    outcomes = outcomes.join(
        _entry_adjustment(outcomes, actions), on=["stock_id", "trade_date", "exit_date"], how="left"
    )
    if limits is not None and not limits.is_empty():
        at_limit = limits.select("stock_id", "trade_date", "at_limit_up", "at_limit_down")
        outcomes = outcomes.join(at_limit, on=["stock_id", "trade_date"], how="left")
    else:
        outcomes = outcomes.with_columns(
            pl.lit(None, pl.Boolean).alias("at_limit_up"), pl.lit(None, pl.Boolean).alias("at_limit_down")
        )
    valid = (pl.col("entry_close") > 0) & pl.col("exit_close").is_not_null()
    unfilled = (
        pl.when(pl.col("signal") == "BUY")
        .then(pl.col("at_limit_up"))
        .otherwise(pl.col("at_limit_down"))
        .fill_null(False)
    )
    return (
        outcomes.with_columns(
            pl.when(valid).then(pl.col("exit_close") / pl.col("entry_close") - 1.0).alias("raw_forward_return"),
            # The exit close is on the basis of the exit date (as of the exit date its factor is 1): only
            # the entry close is adjusted.
            pl.when(valid)
            .then(pl.col("exit_close") / (pl.col("entry_close") * pl.col("entry_factor").fill_null(1.0)) - 1.0)
            .alias("forward_return"),
            unfilled.alias("unfilled"),
        )
        .with_columns(
            pl.when(pl.col("unfilled"))
            .then(None)
            .when(pl.col("signal") == "BUY")
            .then(pl.col("forward_return") > 0)
            .otherwise(pl.col("forward_return") < 0)
            .alias("hit")
        )
        .select(
            "strategy_id",
            "stock_id",
            "trade_date",
            "signal",
            "exit_date",
            "raw_forward_return",
            "forward_return",
            "unfilled",
            "hit",
        )
    )


def _entry_adjustment(outcomes: pl.DataFrame, actions: pl.DataFrame | None) -> pl.DataFrame:
    """stock_id, trade_date, exit_date, entry_factor: the backward adjustment factor of the entry close
    as of the exit date (1.0 when no event of the stock falls in between), as `adjust_prices` gives it
    with `as_of` = the exit date: the product of the factors of the stock's events with trade date <
    ex_date <= exit date and published on or before the exit date, multiplied from the latest ex-date
    back (the order of its suffix products, so the bits agree). All exit dates in one pass."""
    schema = {"stock_id": pl.Utf8, "trade_date": pl.Date, "exit_date": pl.Date, "entry_factor": pl.Float64}
    if actions is None or actions.is_empty():
        return pl.DataFrame(schema=schema)
    entries = (
        outcomes.filter(
            pl.col("exit_date").is_not_null()
            & pl.col("stock_id").is_in(actions.get_column("stock_id").unique().implode())
        )
        .select("stock_id", "trade_date", "exit_date")
        .unique()
    )
    if entries.is_empty():
        return pl.DataFrame(schema=schema)
    # Every event any exit date knows, checked for plausibility as `adjust_prices` checks them; each
    # exit date then keeps the events published by then.
    events = adjustment_factors(actions, entries.get_column("exit_date").max())
    entry = ["stock_id", "trade_date", "exit_date"]
    return (
        entries.join(events, on="stock_id", how="inner")
        .filter(
            (pl.col("ex_date") > pl.col("trade_date"))
            & (pl.col("ex_date") <= pl.col("exit_date"))
            & (pl.col("published_on") <= pl.col("exit_date"))
        )
        .sort([*entry, "ex_date", "kind"])
        .group_by([*entry, "ex_date"], maintain_order=True)
        .agg(pl.col("factor").product())
        .sort([*entry, "ex_date"], descending=[False, False, False, True])
        .group_by(entry, maintain_order=True)
        .agg(pl.col("factor").cum_prod().last().alias("entry_factor"))
        .cast(schema)
    )


def compute_stats(
    as_of_dates: Sequence[dt.date],
    strategy_ids: Sequence[str],
    daily_signals: pl.DataFrame,
    outcomes: pl.DataFrame,
    daily_executions: pl.DataFrame,
    *,
    periods: Sequence[int] = PERIODS,
    computed_at: dt.datetime | None = None,
    earlier_signals: dict[str, int] | None = None,
) -> pl.DataFrame:
    """strategy_stats rows for every (strategy, as-of date, period).

    `daily_signals`: strategy_id, trade_date, signal, n, confidence_sum (per day and signal type).
    `outcomes`: from `signal_outcomes`. `daily_executions`: strategy_id, execution_date, n, last_started_at.
    `earlier_signals`: per strategy, the signals stored before the days `daily_signals` covers (which
    must then reach back over the longest period before the first as-of date); they count in
    `total_signals` only.
    """
    computed_at = computed_at or dt.datetime.now(dt.UTC)
    earlier_signals = earlier_signals or {}
    if not as_of_dates or not strategy_ids or not periods:
        return pl.DataFrame(schema=_STATS_SCHEMA)
    # Every (as-of date, period) window at once: one row per window, then the per-day rows of each
    # window joined to it by date range, instead of filtering the days once per as-of date and period
    # (a year's 265 as-of days x 3 periods took ~10,000 small polars queries).
    windows = pl.DataFrame(
        [(as_of, period, as_of - dt.timedelta(days=period)) for as_of in sorted(as_of_dates) for period in periods],
        schema={"as_of_date": pl.Date, "period_days": pl.Int64, "start": pl.Date},
        orient="row",
    )
    window_keys = ["as_of_date", "period_days", "strategy_id"]

    def per_window(daily: pl.DataFrame, *aggregations: pl.Expr, exit_by_as_of: bool = False) -> pl.DataFrame:
        """`aggregations` over the rows of `daily` whose trade date is in each window, per strategy.
        Each window's rows keep their order in `daily`, so float sums add up as they always have."""
        condition = [pl.col("trade_date") > pl.col("start"), pl.col("trade_date") <= pl.col("as_of_date")]
        if exit_by_as_of:
            condition.append(pl.col("exit_date") <= pl.col("as_of_date"))
        return (
            windows.join_where(daily.with_row_index("day_row"), *condition)
            .sort("as_of_date", "period_days", "day_row")
            .group_by(window_keys, maintain_order=True)
            .agg(*aggregations)
        )

    acting = pl.col("signal").is_in(ACTING)
    counts = per_window(
        daily_signals,
        pl.col("n").sum().alias("signal_count"),
        pl.col("n").filter(pl.col("signal") == "BUY").sum().alias("buy_count"),
        pl.col("n").filter(pl.col("signal") == "SELL").sum().alias("sell_count"),
        pl.col("confidence_sum").filter(acting).sum().alias("confidence_sum"),
        pl.col("n").filter(acting).sum().alias("acting"),
    )
    # Judged signals collapse to one row per (strategy, trade date): they share an exit date.
    judged = (
        outcomes.filter(pl.col("hit").is_not_null())
        .group_by("strategy_id", "trade_date", "exit_date")
        .agg(pl.len().alias("evaluated"), pl.col("hit").sum().alias("hits"))
    )
    hits = per_window(judged, pl.col("evaluated").sum(), pl.col("hits").sum(), exit_by_as_of=True)
    unfilled_daily = (
        (outcomes.filter(pl.col("unfilled")) if "unfilled" in outcomes.columns else outcomes.clear())
        .group_by("strategy_id", "trade_date")
        .agg(pl.len().alias("unfilled"))
    )
    unfilled = per_window(unfilled_daily, pl.col("unfilled").sum().alias("unfilled_signals"))
    # Running totals as of each date: executions and signals on or before it.
    as_of_frame = pl.DataFrame({"as_of_date": sorted(as_of_dates)}, schema={"as_of_date": pl.Date})
    executions = _as_of(
        as_of_frame,
        daily_executions.rename({"execution_date": "trade_date"}),
        pl.col("n").sum().alias("total_executions"),
        pl.col("last_started_at").max().alias("last_execution_at"),
    )
    totals = _as_of(as_of_frame, daily_signals, pl.col("n").sum().alias("total_signals"))
    earlier = pl.DataFrame(
        {"strategy_id": list(earlier_signals), "earlier": list(earlier_signals.values())},
        schema={"strategy_id": pl.Utf8, "earlier": pl.Int64},
    )
    # The rows' order: as-of day, strategy (as given), period (as given, which is the windows' order).
    grid = (
        windows.select("as_of_date", "period_days")
        .with_row_index("window")
        .join(
            pl.DataFrame({"strategy_id": list(strategy_ids)}, schema={"strategy_id": pl.Utf8}).with_row_index("order"),
            how="cross",
        )
    )
    table = (
        grid.join(counts, on=window_keys, how="left")
        .join(hits, on=window_keys, how="left")
        .join(unfilled, on=window_keys, how="left")
        .join(executions, on=["as_of_date", "strategy_id"], how="left")
        .join(totals, on=["as_of_date", "strategy_id"], how="left")
        .join(earlier, on="strategy_id", how="left")
        .sort("as_of_date", "order", "window")
    )
    rows = [
        {
            "strategy_id": r["strategy_id"],
            "as_of_date": r["as_of_date"],
            "period_days": r["period_days"],
            "total_executions": r["total_executions"] or 0,
            "total_signals": (r["total_signals"] or 0) + (r["earlier"] or 0),
            "last_execution_at": r["last_execution_at"],
            "signal_count": r["signal_count"] or 0,
            "buy_count": r["buy_count"] or 0,
            "sell_count": r["sell_count"] or 0,
            # Python's round on the quotient, as the stored figures have always been rounded.
            "avg_confidence": round(r["confidence_sum"] / r["acting"], 6) if r["acting"] else None,
            "evaluated_signals": r["evaluated"] or 0,
            "hit_rate": round(r["hits"] / r["evaluated"], 6) if r["evaluated"] else None,
            "unfilled_signals": r["unfilled_signals"] or 0,
            "computed_at": computed_at,
        }
        for r in table.iter_rows(named=True)
    ]
    return pl.DataFrame(rows, schema=_STATS_SCHEMA, orient="row")


def _as_of(as_of_dates: pl.DataFrame, daily: pl.DataFrame, *aggregations: pl.Expr) -> pl.DataFrame:
    """`aggregations` per strategy over the rows of `daily` with trade date on or before each as-of date."""
    return (
        as_of_dates.join_where(daily, pl.col("trade_date") <= pl.col("as_of_date"))
        .group_by("as_of_date", "strategy_id")
        .agg(*aggregations)
    )


_STATS_SCHEMA = {
    "strategy_id": pl.Utf8,
    "as_of_date": pl.Date,
    "period_days": pl.Int64,
    "total_executions": pl.Int64,
    "total_signals": pl.Int64,
    "last_execution_at": pl.Datetime("us", "UTC"),
    "signal_count": pl.Int64,
    "buy_count": pl.Int64,
    "sell_count": pl.Int64,
    "avg_confidence": pl.Float64,
    "evaluated_signals": pl.Int64,
    "hit_rate": pl.Float64,
    "unfilled_signals": pl.Int64,
    "computed_at": pl.Datetime("us", "UTC"),
}


# ------------------------------------------------------------------------------------- warehouse
@dataclass
class StatsResult:
    stats: pl.DataFrame
    rows_written: int
    # Per BUY/SELL signal of the window read (see `signal_outcomes`): what the basket-return chart shows.
    outcomes: pl.DataFrame | None = None


def update_strategy_stats(
    warehouse: Warehouse,
    store: FrameStore,
    as_of_dates: Sequence[dt.date],
    *,
    periods: Sequence[int] = PERIODS,
    now: dt.datetime | None = None,
    save: bool = True,
) -> StatsResult:
    """Compute the stats for `as_of_dates` in one pass and replace those dates' rows atomically."""
    now = now or dt.datetime.now(dt.UTC)
    as_of_dates = sorted(as_of_dates)
    if not as_of_dates:
        return StatsResult(pl.DataFrame(schema=_STATS_SCHEMA), 0)
    first = as_of_dates[0] - dt.timedelta(days=max(periods))
    last = as_of_dates[-1]
    with warehouse.engine.connect() as conn:
        horizons = dict(conn.execute(sa.select(strategies.c.strategy_id, strategies.c.horizon_days)).fetchall())
        # Signals before the windows only add to the totals: counted per strategy, not summed per day
        # (a day's run would otherwise aggregate every stored signal of every earlier year).
        earlier = _signal_counts(conn, strategy_signals.c.trade_date <= first)
        daily_signals, acting = _daily_counts_and_acting_signals(conn, first, last)
        daily_executions = _frame(
            conn,
            sa.select(
                strategy_executions.c.strategy_id,
                strategy_executions.c.execution_date,
                sa.func.count().label("n"),
                sa.func.max(strategy_executions.c.started_at).label("last_started_at"),
            )
            .where(strategy_executions.c.execution_date <= last)
            .group_by(strategy_executions.c.strategy_id, strategy_executions.c.execution_date),
            {
                "strategy_id": pl.Utf8,
                "execution_date": pl.Date,
                "n": pl.Int64,
                "last_started_at": pl.Datetime("us", "UTC"),
            },
        )
    closes, actions, limits = read_outcome_inputs(store, first, last)
    outcomes = signal_outcomes(acting, closes, horizons, trading_days(first, last), actions=actions, limits=limits)
    stats = compute_stats(
        as_of_dates,
        sorted(horizons),
        daily_signals,
        outcomes,
        daily_executions,
        periods=periods,
        computed_at=now,
        earlier_signals=earlier,
    )
    if not save:
        return StatsResult(stats, 0, outcomes)
    with warehouse.begin() as conn:
        conn.execute(strategy_stats.delete().where(strategy_stats.c.as_of_date.in_(as_of_dates)))
        if stats.height:
            conn.execute(strategy_stats.insert(), stats.to_dicts())
        # All-time signal counts from what was read above plus the (usually no) signals after `last`,
        # instead of a second pass over the whole table.
        counted = daily_signals.group_by("strategy_id").agg(pl.col("n").sum())
        all_time = _signal_counts(conn, strategy_signals.c.trade_date > last)
        for strategy_id, n in [*earlier.items(), *counted.iter_rows()]:
            all_time[strategy_id] = all_time.get(strategy_id, 0) + n
        refresh_strategy_summaries(conn, now, signal_counts=all_time)
    return StatsResult(stats, stats.height, outcomes)


def _daily_counts_and_acting_signals(
    conn: Connection, first: dt.date, last: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """For trade dates in (first, last]: the daily counts (strategy_id, trade_date, signal, n,
    confidence_sum; one row per signal type present, the HOLD rows' confidence not summed: no figure
    uses it) and the acting signals (strategy_id, stock_id, trade_date, signal: the BUY and SELL rows).

    One pass over the signals: grouped by (trade date, strategy) with the signal types counted side by
    side and each day's BUY and SELL stocks packed into one list. Reading the year's 0.8 M acting rows
    on their own took a second scan of the 3.7 M-row table and a Python object per row; grouping by
    the signal as well made SQLite sort the year's rows in a temporary tree first."""
    signal, confidence = strategy_signals.c.signal, strategy_signals.c.confidence
    counted = {
        kind: (
            sa.func.sum(sa.case((signal == kind, 1), else_=0)).label(f"n_{kind}"),
            _reproducible_sum(conn, sa.case((signal == kind, confidence))).label(f"confidence_{kind}"),
            _joined(conn, sa.case((signal == kind, strategy_signals.c.stock_id))).label(f"stocks_{kind}"),
        )
        for kind in ACTING
    }
    query = (
        sa.select(
            strategy_signals.c.trade_date,
            strategy_signals.c.strategy_id,
            sa.func.count().label("n"),
            *(column for columns in counted.values() for column in columns),
        )
        .where(strategy_signals.c.trade_date > first, strategy_signals.c.trade_date <= last)
        .group_by(strategy_signals.c.trade_date, strategy_signals.c.strategy_id)
    )
    schema = {"trade_date": pl.Date, "strategy_id": pl.Utf8, "n": pl.Int64} | {
        name: dtype
        for kind in counted
        for name, dtype in ((f"n_{kind}", pl.Int64), (f"confidence_{kind}", pl.Float64), (f"stocks_{kind}", pl.Utf8))
    }
    days = _frame(conn, query, schema)
    keys = [pl.col("strategy_id"), pl.col("trade_date")]
    counts = [
        days.select(
            *keys,
            pl.lit(kind).alias("signal"),
            pl.col(f"n_{kind}").alias("n"),
            pl.col(f"confidence_{kind}").alias("confidence_sum"),
        )
        for kind in counted
    ]
    hold = days.select(
        *keys,
        pl.lit("HOLD").alias("signal"),
        (pl.col("n") - sum(pl.col(f"n_{kind}") for kind in counted)).alias("n"),
        pl.lit(None, pl.Float64).alias("confidence_sum"),
    )
    acting = pl.concat(
        [
            days.select(
                "strategy_id",
                pl.col(f"stocks_{kind}").str.split(STOCK_SEPARATOR).alias("stock_id"),
                "trade_date",
                pl.lit(kind).alias("signal"),
            ).explode("stock_id")
            for kind in counted
        ]
    ).filter(pl.col("stock_id").is_not_null())
    expected = days.select(sum(pl.col(f"n_{kind}") for kind in counted).sum()).item() or 0
    if acting.height != expected:  # a stock id holding the separator would have split in two
        raise ValueError(f"strategy_signals: {acting.height} acting stock ids unpacked, {expected} counted")
    return pl.concat([*counts, hold]).filter(pl.col("n") > 0), acting


def _joined(conn: Connection, column: sa.ColumnElement) -> sa.ColumnElement:
    """The group's non-null values of a text column joined with STOCK_SEPARATOR (null when none)."""
    if conn.dialect.name == "postgresql":
        return sa.func.string_agg(column, STOCK_SEPARATOR)
    return sa.func.group_concat(column, STOCK_SEPARATOR)


# Limits of the window's first days need the previous traded close (a few days back covers short halts).
PREVIOUS_CLOSE_DAYS = 20
_QUOTE_COLUMNS = ["stock_id", "trade_date", "close", "is_suspended", "is_etf"]
_CLOSE_SCHEMA = {"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64}


def read_outcome_inputs(
    store: FrameStore, first: dt.date, last: dt.date
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(closes, corporate actions, limits) that `signal_outcomes` needs for signals and exits in [first, last].

    Limits come from `market.tradability` over the stored daily_quotes and corporate_actions — the same
    function and inputs as the `tradability` asset, so the stats need no extra upstream and agree with
    it. No stored corporate_actions: total return = raw return."""
    history_from = previous_trading_days(first, PREVIOUS_CLOSE_DAYS + 1)[0]
    try:
        quotes = store.read_range("daily_quotes", history_from, last, columns=_QUOTE_COLUMNS)
    except pl.exceptions.ColumnNotFoundError:  # frames written by hand hold only the close
        quotes = store.read_range("daily_quotes", history_from, last, columns=list(_CLOSE_SCHEMA))
    if quotes.is_empty():
        quotes = pl.DataFrame(schema=_CLOSE_SCHEMA)
    actions = store.read_range("corporate_actions", history_from, last)
    limits = tradability(
        quotes.filter(pl.col("trade_date") >= first), actions, quotes.filter(pl.col("trade_date") < first)
    )
    closes = quotes.filter(pl.col("trade_date") >= first).select(list(_CLOSE_SCHEMA)).cast(_CLOSE_SCHEMA)
    return closes, actions, limits


def refresh_strategy_summaries(
    conn: Connection, now: dt.datetime, *, signal_counts: dict[str, int] | None = None
) -> None:
    """The source's UPDATE strategies SET total_executions/total_signals/last_execution_at (JOB-M11-003).

    `signal_counts`: every stored signal per strategy, when the caller has counted them already."""
    executions = strategy_executions.alias("se")
    own = strategies.c.strategy_id
    # Signals are counted in one grouped pass: no index leads with strategy_id, so a correlated count
    # per strategy would scan strategy_signals once per strategy (millions of rows after a backfill).
    if signal_counts is None:
        signal_counts = _signal_counts(conn, sa.true())
    summarised = conn.execute(sa.select(own).where(strategies.c.status.in_(["ACTIVE", "INACTIVE"]))).scalars().all()
    for strategy_id in summarised:
        conn.execute(
            strategies.update()
            .where(own == strategy_id)
            .values(
                total_executions=sa.select(sa.func.count())
                .select_from(executions)
                .where(executions.c.strategy_id == own)
                .scalar_subquery(),
                total_signals=signal_counts.get(strategy_id, 0),
                last_execution_at=sa.select(sa.func.max(executions.c.started_at))
                .where(executions.c.strategy_id == own)
                .scalar_subquery(),
                updated_at=now,
            )
        )


def _signal_counts(conn: Connection, where: sa.ColumnElement[bool]) -> dict[str, int]:
    """Stored signals per strategy among the rows matching `where`."""
    query = sa.select(strategy_signals.c.strategy_id, sa.func.count()).where(where)
    return dict(conn.execute(query.group_by(strategy_signals.c.strategy_id)).fetchall())


def _reproducible_sum(conn: Connection, column: sa.ColumnElement) -> sa.ColumnElement:
    """SUM of a float column that gives the same bits on every run. PostgreSQL sums a large table in
    parallel workers whose partial sums meet in no fixed order, and float addition is not associative:
    the year's confidence sums (and so avg_confidence) differed in the last bits between two runs of
    the same code. A NUMERIC sum is exact, so its order does not matter; SQLite sums in one pass, in
    a fixed order, already."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.func.sum(sa.cast(column, sa.Numeric)), sa.Float)
    return sa.func.sum(column)


# Rows converted to polars at a time: a year's BUY/SELL signals are ~0.8 M rows, which as Python row
# objects all at once took several hundred MiB, more than the rest of the stats step.
FRAME_PART_ROWS = 100_000


def _frame(conn: Connection, query: sa.Select, schema: dict) -> pl.DataFrame:
    """The query's rows as a frame of `schema`, read and converted part by part (a server-side cursor on
    PostgreSQL), so the rows are never all held as Python objects at once."""
    result = conn.execute(query.execution_options(stream_results=True))
    parts = [_part(rows, schema) for rows in result.partitions(FRAME_PART_ROWS)]
    return pl.concat(parts) if parts else pl.DataFrame(schema=schema)


def _part(rows: Sequence[sa.Row], schema: dict) -> pl.DataFrame:
    frame = pl.DataFrame([tuple(r) for r in rows], schema=list(schema), orient="row", infer_schema_length=None)
    # SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones.
    fixes = []
    for name, dtype in schema.items():
        if (
            isinstance(dtype, pl.Datetime)
            and isinstance(frame.schema[name], pl.Datetime)
            and frame.schema[name] != dtype
        ):
            column = pl.col(name)
            if getattr(frame.schema[name], "time_zone", None) is None:
                column = column.dt.replace_time_zone("UTC")
            fixes.append(column.dt.convert_time_zone("UTC").cast(dtype).alias(name))
    return frame.with_columns(fixes).cast(schema) if fixes else frame.cast(schema)
