import datetime as dt

import pytest
import sqlalchemy as sa

from qrl_platform import calendar as partitions  # the calendar owns the clock
from qrl_platform.calendar import taipei_today
from qrl_platform.defs.maintenance.jobs import cleanup_old_signals_job
from qrl_platform.defs.resources import WarehouseResource
from qrl_platform.maintenance.cleanup import RetentionPolicy, cleanup_old_signals
from qrl_platform.warehouse.schema import job_execution_details, strategy_executions, strategy_signals

TODAY = dt.date(2024, 12, 29)  # a Sunday
NOW = dt.datetime(2024, 12, 29, 3, tzinfo=dt.UTC)
AGES = (0, 29, 31, 89, 91, 364, 366)  # days before TODAY


def _seed(warehouse):
    with warehouse.begin() as conn:
        for age in AGES:
            day = TODAY - dt.timedelta(days=age)
            conn.execute(
                strategy_signals.insert(),
                [
                    dict(
                        signal_id=f"sig-{age}",
                        strategy_id="STG_X",
                        stock_id="2330",
                        trade_date=day,
                        execution_id=f"ex-{age}",
                        signal="BUY",
                        confidence=0.5,
                        score=1.0,
                        created_at=NOW,
                    )
                ],
            )
            conn.execute(
                strategy_executions.insert(),
                [
                    dict(
                        execution_id=f"ex-{age}",
                        strategy_id="STG_X",
                        execution_date=day,
                        started_at=NOW,
                        status="SUCCESS",
                        diagnostics='{"slowest": 1}',
                    )
                ],
            )
            conn.execute(
                job_execution_details.insert(),
                [
                    dict(
                        job_name="strategy_signals",
                        trade_date=day,
                        strategy_id="STG_X",
                        execution_id=f"ex-{age}",
                        status="FAILED",
                        error_message="x",
                        recorded_at=NOW,
                    )
                ],
            )


def _ids(warehouse, table, column):
    with warehouse.engine.connect() as conn:
        return sorted(conn.execute(sa.select(table.c[column])).scalars())


def test_retention_rules_by_age(warehouse):
    _seed(warehouse)
    result = cleanup_old_signals(warehouse, TODAY)
    assert _ids(warehouse, strategy_signals, "signal_id") == sorted(f"sig-{a}" for a in (0, 29, 31, 89))
    assert _ids(warehouse, strategy_executions, "execution_id") == sorted(f"ex-{a}" for a in (0, 29, 31, 89, 91, 364))
    with warehouse.engine.connect() as conn:
        rows = dict(
            conn.execute(sa.select(strategy_executions.c.execution_id, strategy_executions.c.diagnostics)).all()
        )
    assert rows["ex-29"] is not None and rows["ex-31"] is None and rows["ex-364"] is None
    assert _ids(warehouse, job_execution_details, "execution_id") == sorted(f"ex-{a}" for a in (0, 29, 31, 89, 91, 364))
    assert (result.signals_deleted, result.executions_deleted, result.details_deleted) == (3, 1, 1)
    assert result.diagnostics_cleared == 4  # 31, 89, 91, 364 days old
    assert result.vacuumed
    # A second run finds nothing more to do.
    again = cleanup_old_signals(warehouse, TODAY, vacuum=False)
    assert (again.signals_deleted, again.executions_deleted, again.diagnostics_cleared) == (0, 0, 0)


def test_invalid_policy_is_rejected():
    with pytest.raises(ValueError, match="signals_days must be at least 1"):
        RetentionPolicy(signals_days=0)


def test_taipei_today_is_the_date_in_taipei_not_on_the_host():
    # UTC+8: until 15:59 UTC it is the same date, from 16:00 UTC it is tomorrow in Taipei.
    assert taipei_today(dt.datetime(2024, 12, 28, 15, 59, tzinfo=dt.UTC)) == dt.date(2024, 12, 28)
    assert taipei_today(dt.datetime(2024, 12, 28, 16, 0, tzinfo=dt.UTC)) == dt.date(2024, 12, 29)
    assert taipei_today(dt.datetime(2024, 12, 28, 23, 30, tzinfo=dt.UTC)) == dt.date(2024, 12, 29)
    new_york = dt.timezone(dt.timedelta(hours=-5))
    assert taipei_today(dt.datetime(2024, 12, 28, 11, 0, tzinfo=new_york)) == dt.date(2024, 12, 29)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        taipei_today(dt.datetime(2024, 12, 28, 23, 30))


def test_the_cleanup_job_counts_retention_from_the_taipei_date(warehouse, monkeypatch):
    """Saturday 23:30 UTC is Sunday 07:30 in Taipei (TODAY). The 90-day retention keeps a signal from 90
    days before TODAY and deletes one from 91 days before; with the host's UTC date (a day earlier)
    the 91-day-old signal would still be inside the window and stay."""
    _seed(warehouse)
    with warehouse.begin() as conn:
        conn.execute(
            strategy_signals.insert(),
            [
                dict(
                    signal_id=f"sig-{age}",
                    strategy_id="STG_X",
                    stock_id="2330",
                    trade_date=TODAY - dt.timedelta(days=age),
                    execution_id="ex-0",
                    signal="BUY",
                    confidence=0.5,
                    score=1.0,
                    created_at=NOW,
                )
                for age in (90,)
            ],
        )
    monkeypatch.setattr(partitions, "utc_now", lambda: dt.datetime(2024, 12, 28, 23, 30, tzinfo=dt.UTC))
    result = cleanup_old_signals_job.execute_in_process(
        resources={"warehouse": WarehouseResource(url=warehouse.url)},
        run_config={"ops": {"cleanup_old_signals_op": {"config": {"vacuum": False}}}},
    )
    assert result.success
    assert _ids(warehouse, strategy_signals, "signal_id") == sorted(f"sig-{a}" for a in (0, 29, 31, 89, 90))
