"""The runner evaluates a range in chunks of days (25 by default), writes a chunk in the background while
it evaluates the next, in order, and stops at a failed write (strategies/runner.py `_ChunkWriter`)."""

import datetime as dt
import functools
import shutil
import threading
import time
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
from polars.testing import assert_frame_equal

from qrl_platform.calendar import previous_trading_days, trading_days
from qrl_platform.market.demo import demo_market
from qrl_platform.market.ingest import ingest_days
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies import runner
from qrl_platform.strategies.definition import BUILTIN_DIR
from qrl_platform.strategies.engine import evaluate_strategy
from qrl_platform.strategies.runner import StrategyRunSettings, run_strategy_days
from qrl_platform.strategies.store import load_strategies, seed_strategies
from qrl_platform.warehouse.schema import strategy_executions, strategy_signals
from qrl_platform_tests.strategies.conftest import write_synthetic_indicators

DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5), dt.date(2024, 3, 6)]
# The first chunk's write is held until day 2's evaluation has begun (at most this long): it can only
# begin if the write runs beside the evaluation, so a write in the caller's thread fails the test.
HOLD_SECONDS = 120.0


def stamped(log_dir: str, definition, frame, dates, options):
    """Evaluates normally; notes when each chunk's evaluation began (in the worker process)."""
    mark = Path(log_dir) / f"evaluated-{dates[0].isoformat()}"
    if not mark.exists():
        mark.write_text(repr(time.time()))
    return evaluate_strategy(definition, frame, dates, options)


@pytest.fixture
def three_days(warehouse, tmp_path):
    store = FrameStore(str(tmp_path / "frames"))
    ingest_days(demo_market(7, 60), store, "daily_quotes", DAYS)
    write_synthetic_indicators(store, DAYS)
    seed_strategies(warehouse)
    return store


def test_chunks_are_written_in_order_in_the_background_while_the_next_is_evaluated(
    warehouse, three_days, tmp_path, monkeypatch
):
    real_save, writes, released = runner.save_run, [], []
    second_mark = tmp_path / f"evaluated-{DAYS[1].isoformat()}"

    def slow_first_write(wh, records):
        begun = time.time()
        if not writes:
            deadline = time.monotonic() + HOLD_SECONDS
            while not second_mark.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            released.append(second_mark.exists())
        result = real_save(wh, records)
        writes.append((records.dates, threading.current_thread().name, begun, time.time()))
        return result

    monkeypatch.setattr(runner, "save_run", slow_first_write)
    summary = run_strategy_days(
        warehouse,
        three_days,
        DAYS,
        StrategyRunSettings(batch_size=1),
        run_id="run-chunks",
        evaluate=functools.partial(stamped, str(tmp_path)),
    )

    assert [dates for dates, *_ in writes] == [[d] for d in DAYS]  # one write per chunk, in order
    assert {name for _, name, *_ in writes} == {"strategy-signals-writer_0"}  # not the caller's thread
    assert released == [True]  # day 2's evaluation began while day 1's write was held
    first_write_ended = writes[0][3]
    second_evaluated = float(second_mark.read_text())
    assert second_evaluated < first_write_ended  # day 2 was evaluated while day 1 was still being written
    assert writes[1][2] >= first_write_ended  # and its write waited for day 1's to commit

    with warehouse.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(strategy_signals)).scalar()
        execution_ids = set(conn.execute(sa.select(strategy_executions.c.execution_id)).scalars())
    assert summary.signals_written == stored > 0
    assert set(summary.execution_ids) == execution_ids and len(execution_ids) == 10 * len(DAYS)
    held_ms = (writes[0][3] - writes[0][2]) * 1000
    assert summary.write_ms >= held_ms - 1  # the held write counts in the write time


def test_a_failed_write_stops_the_run_and_nothing_after_it_is_written(warehouse, three_days, monkeypatch):
    calls = []

    def failing_write(wh, records):
        calls.append(records.dates)
        raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(runner, "save_run", failing_write)
    with pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
        run_strategy_days(warehouse, three_days, DAYS, StrategyRunSettings(batch_size=1), run_id="run-fails")
    # The failure surfaced when the second chunk was handed over: that one and the third were never written.
    assert calls == [[DAYS[0]]]
    with warehouse.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(strategy_executions)).scalar() == 0


KD_CROSS = """
strategy_id: STG_TEST_KD_CROSS
name: KD crosses
status: ACTIVE
version: 1
horizon_days: 5
rules:
  - {factor: kd_k, op: cross_above, other: kd_d, weight: 1}
  - {factor: rsi_14, op: cross_below, value: 50, weight: 1}
signal: {buy_above: 0.5, sell_below: 0.25}
"""


def stored_signals(warehouse) -> pl.DataFrame:
    """The stored signals without what differs between runs (execution ids, creation times)."""
    columns = ("signal_id", "strategy_id", "stock_id", "trade_date", "signal", "confidence", "score", "factor_values")
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.select(*(strategy_signals.c[c] for c in columns)).order_by(strategy_signals.c.signal_id))
        return pl.DataFrame([tuple(row) for row in rows], schema=list(columns), orient="row")


def test_a_range_is_evaluated_in_chunks_of_25_days_that_give_the_signals_of_one_pass(warehouse, tmp_path, monkeypatch):
    """The memory of a year's backfill rests on evaluating 25 days at a time (docs/performance.md). A
    chunk must not change a signal: the cross rules read each day's previous trading day, also across a
    chunk's first day."""
    days = trading_days(dt.date(2024, 3, 4), dt.date(2024, 4, 30))[:27]
    before = previous_trading_days(days[0] - dt.timedelta(days=1), 1)
    store = FrameStore(str(tmp_path / "frames"))
    ingest_days(demo_market(7, 60), store, "daily_quotes", before + days)
    write_synthetic_indicators(store, before + days)
    definitions = tmp_path / "strategies"
    shutil.copytree(BUILTIN_DIR, definitions)
    (definitions / "kd_cross.yaml").write_text(KD_CROSS)  # no built-in strategy has a cross rule
    seed_strategies(warehouse, definitions)
    assert [d.strategy_id for d in load_strategies(warehouse).definitions if d.previous_day_fields()] == [
        "STG_TEST_KD_CROSS"
    ]

    loaded, real_load = [], runner.load_frame

    def recording_load(store, dates, **kwargs):
        loaded.append(list(dates))
        return real_load(store, dates, **kwargs)

    monkeypatch.setattr(runner, "load_frame", recording_load)
    chunked = run_strategy_days(warehouse, store, days, run_id="chunked")  # the default settings
    assert loaded == [days[:25], days[25:]]
    in_chunks = stored_signals(warehouse)

    one_pass = run_strategy_days(warehouse, store, days, StrategyRunSettings(batch_size=len(days)), run_id="one-pass")
    assert loaded[2:] == [days]
    assert chunked.signals_written == one_pass.signals_written == in_chunks.height > 0
    # The cross strategy acts on the second chunk's first day: it read the first chunk's last day.
    first_of_second = in_chunks.filter(pl.col("trade_date") == days[25], pl.col("strategy_id") == "STG_TEST_KD_CROSS")
    assert first_of_second["signal"].is_in(["BUY", "SELL"]).any()
    assert_frame_equal(stored_signals(warehouse), in_chunks, check_exact=True)
