"""Outages are retried, then reported: a real PostgreSQL or Redis is stopped in the middle of a
run, right before the write, and started again on the same port and data a couple of seconds later.
The step's retry policy re-runs it; the run completes and nothing is stored twice. When the server
stays down, the final error names the server and the operation and never the password.

The jobs here are the production selections and tags with a test-sized policy (same shape as
job_tags.STEP_RETRY: exponential backoff, jitter) so retries take seconds, not minutes;
`test_every_job_that_touches_a_server_has_the_shared_retry_policy` checks the production jobs.
"""

import datetime as dt
import functools
import json
import threading

import dagster as dg
import pytest
import redis
import sqlalchemy as sa

from qrl_platform.definitions import PARTITIONS_NAMES, RESOURCES, defs
from qrl_platform.defs.alerts.sensors import step_error_message
from qrl_platform.defs.job_tags import STEP_RETRY
from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.notify.assets import m13_notification
from qrl_platform.defs.strategies.assets import STRATEGY_ASSETS, strategies
from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS
from qrl_platform.defs.treasury.assets import QRL_ASSETS
from qrl_platform.defs.treasury.resources import QRL_RESOURCES
from qrl_platform.notify.relay import STREAM_KEY
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.treasury.rebalance import REDIS_HISTORY_KEY
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.servers import start_postgres, start_redis
from qrl_platform_tests.strategies.conftest import write_synthetic_indicators

DAY = "2024-03-05"
FAST_RETRY = dg.RetryPolicy(max_retries=4, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
DOWN_SECONDS = 2.0
PASSWORD = "s3cret-not-for-logs"  # the test cluster trusts local connections, so any password connects


@pytest.fixture(scope="module")
def outage_postgres():
    """A PostgreSQL of this module's own, so stopping it never disturbs the session's server; durable,
    so a row committed just before a stop is still there after the restart."""
    server = start_postgres(durable=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def outage_redis():
    server = start_redis(persistent=True)
    yield server
    server.stop()


@pytest.fixture
def pg_warehouse(outage_postgres, qrl_home, monkeypatch):
    url = outage_postgres.create_database(f"qrl_outage_{dt.datetime.now().strftime('%H%M%S%f')}")
    url = url.replace("postgres@", f"postgres:{PASSWORD}@")
    monkeypatch.setenv("QRL_WAREHOUSE_URL", url)
    monkeypatch.setenv("QRL_ALERT_CHANNELS", "log")
    return url


class Outage:
    """Wraps `name` on `target`: its first call stops `server`, a timer starts it again after
    DOWN_SECONDS, then the real call runs (and meets the outage)."""

    def __init__(self, monkeypatch, target, name: str, server) -> None:
        self.calls = 0
        self.timer: threading.Timer | None = None
        original = getattr(target, name)

        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            self.calls += 1
            if self.calls == 1:
                server.halt()
                self.timer = threading.Timer(DOWN_SECONDS, server.resume)
                self.timer.start()
            return original(*args, **kwargs)

        monkeypatch.setattr(target, name, wrapper)

    def wait_for_restart(self) -> None:
        if self.timer is not None:
            self.timer.join()


def _job_like(name: str, selection, assets, checks=(), policy: dg.RetryPolicy = FAST_RETRY, resources=RESOURCES):
    """The production job `name`: same selection and tags, with `policy`."""
    tags = dict(defs.resolve_job_def(name).tags)
    job = dg.define_asset_job(name, selection=selection, tags=tags, op_retry_policy=policy)
    return dg.Definitions(assets=assets, asset_checks=list(checks), jobs=[job], resources=resources).resolve_job_def(
        name
    )


def _retries(instance, run_id: str) -> int:
    return len(instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records)


def _prepare_day(instance) -> None:
    dg.materialize(
        [daily_quotes],
        resources=RESOURCES,
        instance=instance,
        tags={"dagster/asset_partition_range_start": "2024-03-04", "dagster/asset_partition_range_end": DAY},
    )
    write_synthetic_indicators(FrameStore(settings().qrl_home), [dt.date(2024, 3, 4), dt.date(2024, 3, 5)])
    dg.materialize([strategies], resources=RESOURCES, instance=instance)


def _scalar(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), {"day": dt.date.fromisoformat(DAY)}).scalar_one()
    finally:
        engine.dispose()


def test_every_job_that_touches_a_server_has_the_shared_retry_policy():
    jobs = [
        "daily_market_job", "monthly_revenue_job", "financials_job", "shareholding_job", "strategies_job",
        "strategy_stats_job", "notify_m13_job", "cleanup_old_signals_job", "refresh_factor_metadata_job",
        "dagster_retention_job", "evaluation_job", "qrl_15min_job", "qrl_rebalance_job",
        # the per-table and per-indicator jobs the market sensor launches on the publication timetable
        "ingest_daily_quotes_job", "ingest_institutional_flows_job", "ingest_margin_balances_job",
        "ingest_valuations_job", "ingest_corporate_actions_job", "technical_indicators_job", "fundamental_indicators_job", "chip_indicators_job",
    ]  # fmt: skip
    # The qrl CLI's asset jobs (definitions.py, one per partitions definition) run what an operator
    # selects, like the UI's "Materialize": no in-place step retry, the operator re-runs.
    cli_jobs = {f"{name}_assets_job" for name in PARTITIONS_NAMES.values()}
    all_jobs = defs.get_repository_def().get_all_jobs()
    named = [j.name for j in all_jobs if not j.name.startswith("__")]
    assert sorted(jobs) == sorted(name for name in named if name not in cli_jobs)
    assert cli_jobs <= set(named)
    for name in jobs:
        assert defs.resolve_job_def(name).op_retry_policy == STEP_RETRY, name
    assert STEP_RETRY.backoff == dg.Backoff.EXPONENTIAL and STEP_RETRY.jitter == dg.Jitter.PLUS_MINUS
    assert STEP_RETRY.max_retries == 3 and STEP_RETRY.delay == 20


def test_postgres_stopped_before_the_signal_write_is_retried_without_duplicates(
    pg_warehouse, outage_postgres, monkeypatch, capsys
):
    import qrl_platform.strategies.runner as runner

    with dg.instance_for_test() as instance:
        _prepare_day(instance)
        outage = Outage(monkeypatch, runner, "save_run", outage_postgres)
        job = _job_like("strategies_job", ["strategy_signals"], STRATEGY_ASSETS, STRATEGY_CHECKS)
        result = job.execute_in_process(instance=instance, partition_key=DAY)
        outage.wait_for_restart()
        retries = _retries(instance, result.run_id)

    assert result.success and outage.calls >= 2
    assert retries >= 1
    assert all(e.passed for e in result.get_asset_check_evaluations())
    signals = _scalar(pg_warehouse, "SELECT count(*) FROM strategy_signals WHERE trade_date = :day")
    distinct = _scalar(
        pg_warehouse,
        "SELECT count(*) FROM (SELECT DISTINCT strategy_id, stock_id, trade_date FROM strategy_signals "
        "WHERE trade_date = :day) AS d",
    )
    executions = _scalar(pg_warehouse, "SELECT count(*) FROM strategy_executions WHERE execution_date = :day")
    generated = _scalar(
        pg_warehouse, "SELECT sum(signals_generated) FROM strategy_executions WHERE execution_date = :day"
    )
    assert executions == 10  # one per strategy: the failed attempt left nothing behind
    assert signals == distinct == generated > 0
    with capsys.disabled():
        print(f"\n[outage] PostgreSQL during strategy_signals: step retries={retries}, signals={signals}, "
              f"duplicates={signals - distinct}")  # fmt: skip


def test_postgres_stopped_before_the_m13_publication_is_retried_and_publishes_once(
    pg_warehouse, outage_postgres, outage_redis, monkeypatch, capsys
):
    import qrl_platform.notify.relay as bus  # publish_signals_ready calls its record_signals_ready

    client = redis.Redis.from_url(f"redis://127.0.0.1:{outage_redis.port}/0")
    client.flushall()
    monkeypatch.setenv("QRL_EVENT_BUS", "redis")
    monkeypatch.setenv("QRL_REDIS_URL", f"redis://127.0.0.1:{outage_redis.port}/0")
    resources = {
        **RESOURCES,
        "event_bus": configured_resources()["event_bus"],
    }
    with dg.instance_for_test() as instance:
        _prepare_day(instance)
        assert defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY).success
        outage = Outage(monkeypatch, bus, "record_signals_ready", outage_postgres)
        job = _job_like("notify_m13_job", ["m13_notification"], [m13_notification], resources=resources)
        result = job.execute_in_process(instance=instance, partition_key=DAY)
        outage.wait_for_restart()
        retries = _retries(instance, result.run_id)

    assert result.success and outage.calls >= 2 and retries >= 1
    events = _scalar(pg_warehouse, "SELECT count(*) FROM event_outbox WHERE trade_date = :day")
    entries = client.xlen(STREAM_KEY)
    client.close()
    assert events == 1 and entries == 1
    with capsys.disabled():
        print(f"\n[outage] PostgreSQL during M13 publication: step retries={retries}, outbox events={events}, "
              f"stream entries={entries}, duplicates={events - 1 + entries - 1}")  # fmt: skip


def test_postgres_down_for_good_fails_naming_the_server_and_operation_without_the_password(
    pg_warehouse, outage_postgres
):
    with dg.instance_for_test() as instance:
        _prepare_day(instance)
        policy = dg.RetryPolicy(max_retries=1, delay=0.2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
        job = _job_like("strategies_job", ["strategy_signals"], STRATEGY_ASSETS, STRATEGY_CHECKS, policy=policy)
        outage_postgres.halt()
        try:
            result = job.execute_in_process(instance=instance, partition_key=DAY, raise_on_error=False)
            retries = _retries(instance, result.run_id)
        finally:
            outage_postgres.resume()

    assert not result.success and retries == 1
    error = result.get_step_failure_events()[0].step_failure_data.error
    assert error.message == "Exceeded max_retries of 1\n"  # Dagster's words; the cause is the outage
    message = step_error_message(error)
    port = outage_postgres.port
    assert message.startswith(
        f"qrl_platform.defs.outages.ServerUnavailable: warehouse postgresql+psycopg://postgres:***@127.0.0.1:{port}/"
    )
    assert f"unavailable during strategy_signals {DAY}..{DAY}: connection failed" in message
    assert PASSWORD not in error.to_string()


def test_redis_stopped_before_the_plan_write_is_retried_without_duplicate_plans(
    qrl_home, outage_redis, monkeypatch, capsys
):
    import qrl_platform.treasury.cycle as treasury_cycle

    for name in ("QRL_MEXC_MODE", "QRL_MEXC_BASE_URL", "MEXC_API_KEY", "MEXC_API_SECRET", "QRL_EXECUTE_ORDERS"):
        monkeypatch.delenv(name, raising=False)
    url = f"redis://127.0.0.1:{outage_redis.port}/0"
    monkeypatch.setenv("QRL_REDIS_URL", url)
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushall()
    resources = {
        **QRL_RESOURCES,
        "warehouse": configured_resources()["warehouse"],
        "redis": configured_resources()["redis"],
    }
    first, second = "2026-11-20-07:30", "2026-11-20-07:45"
    with dg.instance_for_test() as instance:
        job = _job_like("qrl_15min_job", ["qrl_position", "rebalance_plan"], QRL_ASSETS, resources=resources)
        assert job.execute_in_process(instance=instance, partition_key=first).success
        outage = Outage(monkeypatch, treasury_cycle, "publish_plan", outage_redis)
        result = job.execute_in_process(instance=instance, partition_key=second)
        outage.wait_for_restart()
        retries = _retries(instance, result.run_id)

    assert result.success and outage.calls >= 2 and retries >= 1
    keys = [json.loads(entry)["partition_key"] for entry in client.lrange(REDIS_HISTORY_KEY, 0, -1)]
    client.close()
    assert keys == [second, first]  # the first plan survived the restart; the retried one is there once
    warehouse = configured_resources()["warehouse"].get()
    plans = warehouse.read_table("rebalance_plans")
    assert sorted(plans["partition_key"].to_list()) == [first, second]
    with capsys.disabled():
        print(f"\n[outage] Redis during rebalance_plan: step retries={retries}, history={len(keys)} entries, "
              f"warehouse plans={plans.height}, duplicates={len(keys) - len(set(keys)) + plans.height - 2}")  # fmt: skip
