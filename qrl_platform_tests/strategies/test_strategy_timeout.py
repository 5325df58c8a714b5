"""Timeouts that stop: a strategy past timeout_minutes is stopped (its worker process ends), recorded as
TIMEOUT in strategy_executions and job_execution_details, and the other strategies' signals are written."""

import datetime as dt
import functools
import os
import time
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from qrl_platform.market.demo import demo_market
from qrl_platform.market.ingest import ingest_days
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies import isolation
from qrl_platform.strategies.engine import evaluate_strategy
from qrl_platform.strategies.runner import StrategyRunSettings, run_strategy_days
from qrl_platform.strategies.store import seed_strategies
from qrl_platform.warehouse.schema import job_execution_details, strategy_executions, strategy_signals
from qrl_platform_tests.strategies.conftest import write_synthetic_indicators

DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]
SLOW = "STG_MOMENTUM_001"
TIMEOUT_MINUTES = 0.05  # 3 seconds
HANG_SECONDS = 120


def hang(pid_file: str, definition, frame, dates, options):
    """SLOW spins in pure Python for two minutes, far past its 3-second limit, then evaluates normally:
    if nothing stopped it, it would end as SUCCESS and the test would fail on its status."""
    if definition.strategy_id == SLOW:
        Path(pid_file).write_text(str(os.getpid()))
        end = time.monotonic() + HANG_SECONDS
        while time.monotonic() < end:
            time.sleep(0.05)
    return evaluate_strategy(definition, frame, dates, options)


def _add(a, b):
    return a + b


def _sleep(seconds):
    time.sleep(seconds)


def _exit_hard():
    os._exit(3)


def _raise():
    raise KeyError("missing")


def _step(item, offset):
    """item "sleep" hangs, "crash" kills the worker, "raise" raises; otherwise (worker pid, item + offset)."""
    if item == "sleep":
        time.sleep(60)
    if item == "crash":
        os._exit(9)
    if item == "raise":
        raise ValueError("bad item")
    return os.getpid(), item + offset


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_until_gone(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _is_running(pid):
            return True
        time.sleep(0.05)
    return False


def test_call_with_deadline_outcomes():
    assert isolation.call_with_deadline(_add, (2, 3), 30) == isolation.Finished(5)
    assert isolation.call_with_deadline(_sleep, (30,), 0.5) == isolation.TimedOut(0.5)
    assert isolation.call_with_deadline(_exit_hard, (), 30) == isolation.Crashed(3)
    raised = isolation.call_with_deadline(_raise, (), 30)
    assert raised == isolation.Raised("KeyError", "KeyError: 'missing'")
    with pytest.raises(ValueError, match="timeout_seconds must be > 0"):
        isolation.call_with_deadline(_add, (1, 2), 0)


def test_one_worker_serves_items_in_turn_and_a_fresh_one_follows_a_timeout_or_crash():
    outcomes = list(isolation.map_with_deadline(_step, [1, 2, "sleep", 3, "raise", 4, "crash", 5], (10,), 2.0))
    first, second, timed_out, third, raised, fourth, crashed, fifth = outcomes
    assert [first.value[1], second.value[1], third.value[1], fourth.value[1], fifth.value[1]] == [11, 12, 13, 14, 15]
    assert first.value[0] == second.value[0]  # the same worker, the shared arguments sent once
    assert timed_out == isolation.TimedOut(2.0) and not _is_running(first.value[0])  # stopped with it
    assert third.value[0] != first.value[0]  # a fresh worker after the timeout...
    assert raised == isolation.Raised("ValueError", "ValueError: bad item") and fourth.value[0] == third.value[0]
    assert crashed == isolation.Crashed(9) and fifth.value[0] != third.value[0]  # ...and after a crash


def test_timeout_minutes_must_be_positive():
    with pytest.raises(ValueError, match="timeout_minutes must be > 0"):
        StrategyRunSettings(timeout_minutes=0)


def test_a_hung_strategy_is_stopped_recorded_as_timeout_and_the_others_write_their_signals(warehouse, tmp_path):
    store = FrameStore(str(tmp_path / "frames"))
    ingest_days(demo_market(7, 60), store, "daily_quotes", DAYS)
    write_synthetic_indicators(store, DAYS)
    seed_strategies(warehouse)
    pid_file = tmp_path / "slow.pid"

    summary = run_strategy_days(
        warehouse,
        store,
        DAYS,
        StrategyRunSettings(timeout_minutes=TIMEOUT_MINUTES),
        run_id="run-timeout",
        evaluate=functools.partial(hang, str(pid_file)),
    )

    # The hung strategy's worker process was stopped, not left running.
    pid = int(pid_file.read_text())
    assert _wait_until_gone(pid), f"the worker {pid} of the hung strategy is still running"
    statuses = {s.strategy_id: s.status for s in summary.strategies.values()}
    assert statuses[SLOW] == "TIMEOUT"
    assert {s for s, status in statuses.items() if status != "SUCCESS"} == {SLOW} and len(statuses) == 10
    assert summary.failed == [SLOW]

    with warehouse.engine.connect() as conn:
        executions = pl.DataFrame(
            [dict(r._mapping) for r in conn.execute(sa.select(strategy_executions))], infer_schema_length=None
        )
        details = [dict(r._mapping) for r in conn.execute(sa.select(job_execution_details))]
        per_strategy = dict(
            conn.execute(
                sa.select(strategy_signals.c.strategy_id, sa.func.count()).group_by(strategy_signals.c.strategy_id)
            ).all()
        )
    slow = executions.filter(pl.col("strategy_id") == SLOW)
    assert slow["status"].to_list() == ["TIMEOUT", "TIMEOUT"] and slow["signals_generated"].to_list() == [0, 0]
    assert "stopped after 3 s: the strategy exceeded timeout_minutes (0.05)" in slow["error_message"][0]
    assert sorted((d["strategy_id"], d["trade_date"], d["status"], d["error_type"]) for d in details) == [
        (SLOW, day, "TIMEOUT", "Timeout") for day in DAYS
    ]
    others = executions.filter(pl.col("strategy_id") != SLOW)
    assert others.height == 9 * len(DAYS) and (others["status"] == "SUCCESS").all()
    # Every other strategy's signals are stored, as many as its executions say; the hung one has none.
    generated = dict(others.group_by("strategy_id").agg(pl.col("signals_generated").sum()).iter_rows())
    assert SLOW not in per_strategy
    assert per_strategy == generated and all(count > 0 for count in generated.values())
    assert summary.signals_written == sum(generated.values())


def _parent_pid() -> int:
    return os.getppid()


def test_workers_fork_from_the_server_started_early():
    import psutil

    starting = isolation.start_server_early()
    assert starting is not None  # Linux has forkserver
    starting.join(timeout=300)
    assert not starting.is_alive()
    servers = [
        child.pid for child in psutil.Process().children() if any("forkserver" in part for part in child.cmdline())
    ]
    assert len(servers) == 1
    isolation.start_server_early().join(timeout=300)  # a second call starts no second server
    assert isolation.call_with_deadline(_parent_pid, (), 60) == isolation.Finished(servers[0])
