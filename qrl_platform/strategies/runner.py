"""EXEC_ALL_STRATEGIES (seed JOB-M11-001) for a set of trading days, as a plain function.

The `strategy_signals` asset, the CLI's manual operations and the benchmark all call
`run_strategy_days`: check the calendar, refuse when an indicator partition is missing, evaluate the
chosen strategies over the days in chunks of `batch_size` days (one vectorised pass per chunk), and
write each chunk in one transaction (or nothing, for a dry run). Returns a summary that knows how to
present itself as Dagster metadata (the per-partition dashboard).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.calendar import day_status, previous_trading_days
from qrl_platform.factors import families
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies import isolation
from qrl_platform.strategies.definition import StrategyDefinition
from qrl_platform.strategies.engine import (
    Evaluation,
    RunOptions,
    StrategyOutcome,
    build_frame,
    evaluate_strategy,
    run_strategies,
    with_previous_day,
)
from qrl_platform.strategies.store import RunRecords, SaveResult, build_records, load_strategies, save_run
from qrl_platform.warehouse import Warehouse

INDICATOR_ASSETS = families.ASSETS  # one stored frame per declared indicator family
QUOTE_COLUMNS = ["stock_id", "trade_date", "market", "close", "volume", "is_etf", "is_suspended"]
TRADABILITY_COLUMNS = [
    "stock_id",
    "trade_date",
    "at_limit_up",
    "at_limit_down",
    "is_disposition",
    "is_full_cash_delivery",
]


class StrategyInputsMissing(RuntimeError):
    """An indicator partition the strategies need is not there; the message names asset and dates."""


@dataclass(frozen=True)
class StrategyRunSettings:
    strategy_ids: tuple[str, ...] = ()  # empty: every ACTIVE strategy
    save_results: bool = True  # False: a dry run — compute and report, write nothing
    options: RunOptions = field(default_factory=RunOptions)
    batch_size: int = 25  # trading days per vectorised pass (and per write transaction); see StrategyRunConfig
    timeout_minutes: float = 30.0  # per strategy and chunk of days; a strategy past it is stopped (TIMEOUT)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1 trading day, got {self.batch_size}")
        if not self.timeout_minutes > 0:
            raise ValueError(
                f"timeout_minutes must be > 0 (a fraction of a minute is fine), got {self.timeout_minutes}"
            )


@dataclass
class StrategyTotals:
    strategy_id: str
    status: str = "SUCCESS"
    days: int = 0
    stocks_evaluated: int = 0
    signals: int = 0
    buy: int = 0
    sell: int = 0
    hold: int = 0
    duration_ms: float = 0.0
    error_message: str | None = None


@dataclass
class StrategyRunSummary:
    dates: list[dt.date]
    open_dates: list[dt.date] = field(default_factory=list)
    closed: dict[dt.date, str] = field(default_factory=dict)
    saved: bool = True
    strategies: dict[str, StrategyTotals] = field(default_factory=dict)
    execution_ids: list[str] = field(default_factory=list)
    signals_written: int = 0
    compute_ms: float = 0.0
    write_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    last_records: RunRecords | None = None  # the last chunk's rows (tests, dry-run inspection)
    # One row per (strategy, day): execution_date, buy/sell/hold counts, duration share — the per-partition
    # figures Dagster's Plots tab charts (a range run has one execution per strategy and day).
    daily: list[dict] = field(default_factory=list)

    @property
    def failed(self) -> list[str]:
        return [s.strategy_id for s in self.strategies.values() if s.status != "SUCCESS"]

    @property
    def total(self) -> dict[str, int]:
        values = self.strategies.values()
        return {
            "signals": sum(s.signals for s in values),
            "buy": sum(s.buy for s in values),
            "sell": sum(s.sell for s in values),
            "hold": sum(s.hold for s in values),
        }

    def slowest(self) -> StrategyTotals | None:
        ran = [s for s in self.strategies.values() if s.status != "TIMEOUT"]
        return max(ran, key=lambda s: s.duration_ms) if ran else None


def run_strategy_days(
    warehouse: Warehouse,
    store: FrameStore,
    dates: Sequence[dt.date],
    settings: StrategyRunSettings = StrategyRunSettings(),
    *,
    run_id: str | None = None,
    log=None,
    evaluate: Callable[..., Evaluation] = evaluate_strategy,
) -> StrategyRunSummary:
    """Run the chosen strategies over `dates` (see the module docstring) and write each chunk.

    Each strategy's evaluation of a chunk runs in a worker process limited to `settings.timeout_minutes`
    (engine.run_strategies): past it, the strategy is stopped and recorded as TIMEOUT in
    strategy_executions and job_execution_details, and the remaining strategies still run and write.
    `evaluate` replaces the engine's evaluation (tests: a deliberately slow strategy); it must be a
    module-level function (or a functools.partial of one), since the worker receives it by reference.
    """
    summary = StrategyRunSummary(dates=sorted(dates), saved=settings.save_results)
    open_dates = _open_dates(store, summary)
    summary.open_dates = open_dates
    if not open_dates:
        return summary
    isolation.start_server_early()  # the strategies' worker processes fork from it (a no-op once started)
    _require_indicators(store, open_dates)
    definitions, prefailed = _select_strategies(warehouse, settings)
    if not definitions and not prefailed:
        summary.notes.append("no ACTIVE strategies in the strategies table")
        return summary

    previous_day_fields = sorted({f for definition in definitions for f in definition.previous_day_fields()})
    writer = _ChunkWriter(warehouse, summary) if settings.save_results else None
    try:
        for start in range(0, len(open_dates), settings.batch_size):
            chunk = open_dates[start : start + settings.batch_size]
            tick = time.perf_counter()
            frame = load_frame(store, chunk, previous_day_fields=previous_day_fields)
            outcomes = run_strategies(
                definitions,
                frame,
                chunk,
                settings.options,
                timeout_seconds=settings.timeout_minutes * 60.0,
                evaluate=evaluate,
            )
            outcomes += [_prefailed(strategy_id, message) for strategy_id, message in prefailed.items()]
            records = build_records(outcomes, chunk, run_id=run_id)
            del frame
            summary.compute_ms += (time.perf_counter() - tick) * 1000
            if writer is not None:
                writer.write(records)  # in the background, once the previous chunk's write has committed
            _accumulate(summary, outcomes, records)
            summary.last_records = records
            # Progress of a run of several chunks. A one-chunk run (a day) says the same in its
            # materialisation's metadata, and each log line is one more event Dagster stores.
            if log is not None and len(open_dates) > settings.batch_size:
                log.info(
                    f"strategies {chunk[0]}..{chunk[-1]}: {records.signals.height} signals from {len(outcomes)} "
                    f"strategies{' (dry run, nothing written)' if not settings.save_results else ''}"
                )
            # The evaluations' own signal frames are copied into `records` above; released now, not when
            # the next chunk's evaluation returns, so a chunk is held once while the next is evaluated.
            del outcomes
        if writer is not None:
            writer.wait()  # the last chunk's write; raises its error
    finally:
        if writer is not None:
            writer.close()
    return summary


class _ChunkWriter:
    """Writes one chunk's records (`save_run`, one transaction) in a background thread while the next
    chunk is evaluated, one write at a time and in order.

    Why: in a backfill the write of a chunk (3.7 M signal rows a year) and the evaluation of the next
    (in the strategy worker process, the other core) do not depend on each other, so they may overlap:
    at best the shorter of the two comes off the wall time (less where both need the GIL: SQLite and the
    PostgreSQL COPY release it, building the rows does not). `write` first waits for the previous write and
    re-raises its error, so nothing is written after a failed chunk; `close` waits for a pending write
    without raising (the caller is already handling an error)."""

    def __init__(self, warehouse: Warehouse, summary: StrategyRunSummary):
        self._warehouse, self._summary = warehouse, summary
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="strategy-signals-writer")
        self._pending: Future | None = None

    def write(self, records: RunRecords) -> None:
        self.wait()
        self._pending = self._pool.submit(self._save, records)

    def _save(self, records: RunRecords) -> tuple[SaveResult, float, list[str]]:
        tick = time.perf_counter()
        result = save_run(self._warehouse, records)
        return result, (time.perf_counter() - tick) * 1000, [row["execution_id"] for row in records.executions]

    def wait(self) -> None:
        if self._pending is None:
            return
        pending, self._pending = self._pending, None
        result, write_ms, execution_ids = pending.result()
        self._summary.write_ms += write_ms
        self._summary.signals_written += result.signals_written
        self._summary.execution_ids += execution_ids

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _open_dates(store: FrameStore, summary: StrategyRunSummary) -> list[dt.date]:
    candidates = []
    for date in summary.dates:
        status = day_status(date)
        if status.is_open:
            candidates.append(date)
        else:
            summary.closed[date] = status.reason
    keys = [d.isoformat() for d in candidates if store.exists("daily_quotes", d.isoformat())]
    stored = store.read_many("daily_quotes", keys, columns=["trade_date"]) if keys else pl.DataFrame()
    with_rows = set(stored["trade_date"].unique().to_list()) if "trade_date" in stored.columns else set()
    open_dates = []
    for date in candidates:
        if date.isoformat() in keys and date not in with_rows:
            # The third source of closures: the exchange answered "no data" for the day.
            summary.closed[date] = "no quotes stored for the day (the source reported no data)"
        else:
            open_dates.append(date)  # quotes present, or missing (refused below with a clear error)
    return open_dates


def _require_indicators(store: FrameStore, dates: Sequence[dt.date]) -> None:
    missing = []
    for asset in ("daily_quotes", *INDICATOR_ASSETS):
        absent = [d.isoformat() for d in dates if not store.exists(asset, d.isoformat())]
        if absent:
            shown = ", ".join(absent[:5]) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            missing.append(f"{asset} is not materialised for {shown}")
    if missing:
        raise StrategyInputsMissing(
            "strategies need M07/M08/M09 indicators and daily_quotes for every trading day they run: "
            + "; ".join(missing)
        )


def _select_strategies(
    warehouse: Warehouse, settings: StrategyRunSettings
) -> tuple[list[StrategyDefinition], dict[str, str]]:
    """The definitions to run, plus stored-but-invalid ones (recorded as FAILED executions)."""
    stored = load_strategies(warehouse)
    if not stored.status:
        raise StrategyInputsMissing("the strategies table is empty: materialise the `strategies` asset first")
    valid = {d.strategy_id: d for d in stored.definitions}
    if settings.strategy_ids:
        unknown = [s for s in settings.strategy_ids if s not in stored.status]
        if unknown:
            raise ValueError(f"strategy_ids: unknown strategies {unknown}; known: {sorted(stored.status)}")
        inactive = [s for s in settings.strategy_ids if stored.status[s] != "ACTIVE"]
        if inactive and settings.save_results:
            raise ValueError(
                f"strategy_ids: {inactive} are INACTIVE; activate them, or set save_results: false for a dry run"
            )
        chosen = list(dict.fromkeys(settings.strategy_ids))
    else:
        chosen = [s for s, status in sorted(stored.status.items()) if status == "ACTIVE"]
    definitions = [valid[s] for s in chosen if s in valid]
    prefailed = {s: stored.invalid[s] for s in chosen if s in stored.invalid}
    return definitions, prefailed


def _prefailed(strategy_id: str, message: str) -> StrategyOutcome:
    now = dt.datetime.now(dt.UTC)
    return StrategyOutcome(strategy_id, "FAILED", now, now, 0.0, error_type="InvalidStrategy", error_message=message)


def load_frame(store: FrameStore, dates: Sequence[dt.date], *, previous_day_fields: Sequence[str] = ()) -> pl.DataFrame:
    """daily_quotes + the three indicator frames for `dates`, joined into the engine's wide frame.

    With `previous_day_fields` (cross rules) each date's previous trading day is read as well and its
    values join as `<field>@prev` columns; a previous day that was never stored leaves them null.
    """
    previous = {d: previous_trading_days(d - dt.timedelta(days=1), 1)[0] for d in dates} if previous_day_fields else {}
    keys = sorted({d.isoformat() for d in (*dates, *previous.values())})
    quotes = store.read_many("daily_quotes", keys, columns=QUOTE_COLUMNS)
    indicators = [store.read_many(asset, keys) for asset in INDICATOR_ASSETS]
    # The tradability flags for universes that exclude on them (absent days: null, which such a
    # strategy refuses — engine.require_tradability).
    flags = store.read_many("tradability", keys, columns=TRADABILITY_COLUMNS)
    frame = build_frame(quotes, [*indicators, flags])
    return with_previous_day(frame, dates, previous, previous_day_fields) if previous_day_fields else frame


def _accumulate(summary: StrategyRunSummary, outcomes: Sequence[StrategyOutcome], records: RunRecords) -> None:
    for outcome in outcomes:
        totals = summary.strategies.setdefault(outcome.strategy_id, StrategyTotals(outcome.strategy_id))
        totals.duration_ms += outcome.duration_ms
        if outcome.status != "SUCCESS":
            totals.status = outcome.status
            totals.error_message = totals.error_message or outcome.error_message
    for row in records.executions:
        totals = summary.strategies[row["strategy_id"]]
        totals.days += 1
        totals.stocks_evaluated += row["stocks_evaluated"]
        totals.signals += row["signals_generated"]
        totals.buy += row["buy_signals"]
        totals.sell += row["sell_signals"]
        totals.hold += row["hold_signals"]
        summary.daily.append({k: row[k] for k in DAILY_FIELDS})


DAILY_FIELDS = ("strategy_id", "execution_date", "status", "buy_signals", "sell_signals", "hold_signals", "duration_ms")
