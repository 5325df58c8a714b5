"""Runs of the evaluation over days: read the inputs, call the maths, write one frame per day.

Frames written (the frame store, one Parquet file per day, atomically replaced):

| frame | key | rows |
|---|---|---|
| `factor_ic` | day E | (D, h, factor) rank/Pearson IC and stock count that became known on E |
| `factor_quantile_returns` | day E | the same (D, h, factor) with each quantile's mean forward return |
| `factor_turnover` | day E | top/bottom quantile turnover and rank autocorrelation of each factor on E |
| `factor_report` | day E | the rolling report as of E (`factor_report.py`) |
| `strategy_backtest` | day D | NAV, cash, costs, turnover, order counts per strategy at D's close |
| `strategy_positions` | day D | holdings at D's close (also the book the next day starts from) |
| `strategy_trades` | day D | filled and unfilled orders at D's open |

Which input partitions count as stored is the caller's `stored_keys(table, keys)` (the wiring hands in
Dagster's materialisations, `defs/stored.py`); without one the FrameStore's files count (`inputs`).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.calendar import previous_trading_days, trading_days
from qrl_platform.evaluation import inputs
from qrl_platform.evaluation.backtest import (
    BacktestResult,
    Book,
    books_from_frames,
    orders_by_day,
    quotes_by_day,
    simulate,
)
from qrl_platform.evaluation.factor_ic import DECAY_HORIZONS, factor_evaluation, forward_returns, known_day_pairs
from qrl_platform.evaluation.factor_report import WINDOWS, factor_reports
from qrl_platform.evaluation.metrics import performance
from qrl_platform.factors.compute_range import StoredKeys, stored_or_files
from qrl_platform.factors.registry import factor_ids as registered_factor_ids
from qrl_platform.market.adjustment import adjustment_factors
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.store import load_strategies
from qrl_platform.warehouse import Warehouse

FACTOR_IC = "factor_ic"
FACTOR_QUANTILE_RETURNS = "factor_quantile_returns"
FACTOR_TURNOVER = "factor_turnover"
FACTOR_REPORT = "factor_report"
STRATEGY_BACKTEST = "strategy_backtest"
STRATEGY_POSITIONS = "strategy_positions"
STRATEGY_TRADES = "strategy_trades"

# The asset whose run writes each frame: a frame's day is stored when that asset's partition is.
WRITTEN_BY = {
    FACTOR_IC: FACTOR_IC,
    FACTOR_QUANTILE_RETURNS: FACTOR_IC,
    FACTOR_TURNOVER: FACTOR_IC,
    FACTOR_REPORT: FACTOR_REPORT,
    STRATEGY_BACKTEST: STRATEGY_BACKTEST,
    STRATEGY_POSITIONS: STRATEGY_BACKTEST,
    STRATEGY_TRADES: STRATEGY_BACKTEST,
}


@dataclass
class EvaluationRun:
    open_days: list[dt.date]
    closed_days: list[dt.date]
    frames: dict[str, pl.DataFrame] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def _split(days: Sequence[dt.date]) -> tuple[list[dt.date], list[dt.date]]:
    open_days = trading_days(min(days), max(days)) if days else []
    wanted = set(days)
    open_days = [d for d in open_days if d in wanted]
    return open_days, sorted(wanted - set(open_days))


def _write_by_day(store: FrameStore, asset: str, frame: pl.DataFrame, column: str, days: Sequence[dt.date]) -> None:
    for day in days:
        store.write(asset, day.isoformat(), frame.filter(pl.col(column) == day))


# ------------------------------------------------------------------------------------- factors
def evaluate_factors(
    store: FrameStore, days: Sequence[dt.date], *, write: bool = True, stored_keys: StoredKeys | None = None
) -> EvaluationRun:
    """`factor_ic`, `factor_quantile_returns` and `factor_turnover` for the known days `days`."""
    run = EvaluationRun(*_split(days))
    if not run.open_days:
        return run
    started = time.perf_counter()
    inputs.require(store, "daily_quotes", run.open_days, "forward returns end on these days", stored_keys)
    history = previous_trading_days(run.open_days[0], max(DECAY_HORIZONS) + 1)
    calendar = sorted(set(history) | set(trading_days(run.open_days[0], run.open_days[-1])))
    quotes = inputs.quotes(store, calendar).select("stock_id", "trade_date", "close")
    actions = inputs.corporate_actions(store, calendar[0], calendar[-1])
    ids = registered_factor_ids()
    # Only the factor days some IC or turnover needs: a daily run reads 6 days of factors, not 22.
    pairs = known_day_pairs(calendar, run.open_days, DECAY_HORIZONS)
    previous = {calendar[calendar.index(d) - 1] for d in run.open_days if calendar.index(d) > 0}
    factor_days = sorted(set(pairs["trade_date"].to_list()) | set(run.open_days) | previous)
    factors = inputs.factors(store, factor_days, ids)
    ids = [f for f in ids if f in factors.columns]
    run.seconds["read"] = time.perf_counter() - started
    started = time.perf_counter()
    returns = forward_returns(quotes, actions, calendar, run.open_days, DECAY_HORIZONS)
    ics, quantiles, turnover = factor_evaluation(factors, returns, ids, calendar, turnover_days=run.open_days)
    run.seconds["compute"] = time.perf_counter() - started
    run.frames = {FACTOR_IC: ics, FACTOR_QUANTILE_RETURNS: quantiles, FACTOR_TURNOVER: turnover}
    if write:
        started = time.perf_counter()
        _write_by_day(store, FACTOR_IC, ics, "known_on", run.open_days)
        _write_by_day(store, FACTOR_QUANTILE_RETURNS, quantiles, "known_on", run.open_days)
        _write_by_day(store, FACTOR_TURNOVER, turnover, "trade_date", run.open_days)
        run.seconds["write"] = time.perf_counter() - started
    return run


def report_factors(
    store: FrameStore,
    days: Sequence[dt.date],
    *,
    windows: Sequence[int] = WINDOWS,
    write: bool = True,
    stored: dict[str, pl.DataFrame] | None = None,
    stored_keys: StoredKeys | None = None,
) -> EvaluationRun:
    """`factor_report` as of each open day of `days`, from the stored (or given) factor_ic frames."""
    run = EvaluationRun(*_split(days))
    if not run.open_days:
        return run
    started = time.perf_counter()
    calendar = sorted(set(previous_trading_days(run.open_days[0], max(windows))) | set(run.open_days))
    if stored is None:
        why = "the report summarises the ICs known by each day"
        inputs.require(store, FACTOR_IC, run.open_days, why, stored_keys)
        stored = {
            name: inputs.stored_range(store, name, calendar[0], calendar[-1], stored_keys)
            for name in (FACTOR_IC, FACTOR_QUANTILE_RETURNS, FACTOR_TURNOVER)
        }
    report = factor_reports(
        stored[FACTOR_IC], stored[FACTOR_QUANTILE_RETURNS], stored[FACTOR_TURNOVER], calendar, run.open_days, windows
    )
    run.frames = {FACTOR_REPORT: report}
    run.seconds["compute"] = time.perf_counter() - started
    if write:
        _write_by_day(store, FACTOR_REPORT, report, "as_of", run.open_days)
    return run


# ------------------------------------------------------------------------------------- strategies
class BacktestStateMissing(ValueError):
    """The book of the previous trading day is not stored, but earlier days are: refusing to restart."""


def backtest_strategies(
    store: FrameStore,
    warehouse: Warehouse,
    days: Sequence[dt.date],
    *,
    write: bool = True,
    strategy_ids: Sequence[str] = (),
    stored_keys: StoredKeys | None = None,
) -> EvaluationRun:
    """`strategy_backtest`, `strategy_positions` and `strategy_trades` for `days`, continuing from the
    book stored for the trading day before them (or from the starting capital when no earlier day is
    stored at all)."""
    run = EvaluationRun(*_split(days))
    if not run.open_days:
        return run
    started = time.perf_counter()
    definitions = [d for d in load_strategies(warehouse).definitions if d.is_active]
    if strategy_ids:
        definitions = [d for d in definitions if d.strategy_id in set(strategy_ids)]
    rules = {d.strategy_id: (d.backtest, d.horizon_days) for d in definitions}
    previous = previous_trading_days(run.open_days[0] - dt.timedelta(days=1), 1)[0]
    books = _stored_books(store, previous, rules, stored_keys)
    why = "positions are valued and traded at these quotes"
    inputs.require(store, "daily_quotes", run.open_days, why, stored_keys)
    calendar = [previous, *trading_days(run.open_days[0], run.open_days[-1])]
    quote_frame = inputs.quotes(store, calendar)
    actions = inputs.corporate_actions(store, calendar[0], calendar[-1])
    market = inputs.market(quote_frame, actions, run.open_days)
    signals = inputs.signals(warehouse, previous, run.open_days[-1], list(rules))
    events = {
        day: dict(zip(frame["stock_id"].to_list(), frame["factor"].to_list(), strict=True))
        for day in run.open_days
        if (frame := adjustment_factors(actions.filter(pl.col("ex_date") == day), day)).height
    }
    run.seconds["read"] = time.perf_counter() - started
    started = time.perf_counter()
    result = simulate(books, run.open_days, quotes_by_day(market), orders_by_day(signals, calendar), events)
    run.seconds["compute"] = time.perf_counter() - started
    run.frames = {STRATEGY_BACKTEST: result.nav, STRATEGY_POSITIONS: result.positions, STRATEGY_TRADES: result.trades}
    if write:
        started = time.perf_counter()
        for name, frame in run.frames.items():
            _write_by_day(store, name, frame, "trade_date", run.open_days)
        run.seconds["write"] = time.perf_counter() - started
    return run


def _stored_books(
    store: FrameStore, previous: dt.date, rules: dict, stored_keys: StoredKeys | None = None
) -> dict[str, Book]:
    key = previous.isoformat()
    stored = stored_or_files(store, stored_keys)
    if key in stored(STRATEGY_BACKTEST, [key]):
        return books_from_frames(store.read(STRATEGY_BACKTEST, key), store.read(STRATEGY_POSITIONS, key), rules)
    earlier = sorted(p for p in stored(STRATEGY_BACKTEST, None) if p < key)
    if earlier:
        raise BacktestStateMissing(
            f"strategy_backtest: the book of {previous} (the trading day before) is not stored, but {earlier[-1]} "
            f"is; backtest {previous} first (or the whole range in one run)"
        )
    return {s: Book.fresh(s, rule, horizon) for s, (rule, horizon) in rules.items()}


def stored_performance(
    store: FrameStore, end: dt.date, start: dt.date | None = None, stored_keys: StoredKeys | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(nav rows, performance figures) of every stored backtest day in [start, end]."""
    nav = inputs.stored_range(store, STRATEGY_BACKTEST, start, end, stored_keys)
    if nav.is_empty():
        return nav, pl.DataFrame()
    return nav, performance(nav)


def result_of(run: EvaluationRun) -> BacktestResult:
    return BacktestResult(run.frames[STRATEGY_BACKTEST], run.frames[STRATEGY_POSITIONS], run.frames[STRATEGY_TRADES])
