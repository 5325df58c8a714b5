"""Schedules (cron, timezone, gates) and sensors evaluated with build_*_context over a real instance."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from qrl_platform.definitions import defs
from qrl_platform.defs import clock as sensors  # the clock every sensor reads
from qrl_platform.defs.daily_flow.schedules import indicator_check_keys
from qrl_platform.defs.resources import MarketSourceResource

TZ = ZoneInfo("Asia/Taipei")
DAY = "2024-03-05"  # a Tuesday


def _at(date: str, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.fromisoformat(date).replace(hour=hour, minute=minute, tzinfo=TZ)


EXPECTED = {
    "daily_market_schedule": ("0 16 * * 1-5", "daily_market_job"),
    "strategies_schedule": ("35 16 * * 1-5", "strategies_job"),
    "notify_m13_schedule": ("45 16 * * 1-5", "notify_m13_job"),
    "strategy_stats_schedule": ("0 17 * * 1-5", "strategy_stats_job"),
    "cleanup_old_signals_schedule": ("0 3 * * 0", "cleanup_old_signals_job"),
    "dagster_retention_schedule": ("30 3 * * 0", "dagster_retention_job"),
    "refresh_factor_metadata_schedule": ("0 7 * * 1", None),
    "monthly_revenue_schedule": ("0 8 11 * *", "monthly_revenue_job"),
    "shareholding_schedule": ("0 10 * * 6", "shareholding_job"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_schedule_has_its_cron_timezone_and_is_on(name):
    schedule = defs.get_schedule_def(name)
    cron, job = EXPECTED[name]
    assert schedule.cron_schedule == cron
    assert schedule.execution_timezone == "Asia/Taipei"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    if job:
        assert schedule.job_name == job


def test_quarter_hour_schedule_and_sensors_are_on_by_default():
    assert defs.get_schedule_def("qrl_15min_schedule").cron_schedule == "*/15 * * * *"
    for name in (
        "market_data_available_sensor",
        "daily_flow_catchup_sensor",
        "m13_consumption_lag_sensor",
        "run_failure_alert_sensor",
        "job_duration_sensor",
    ):
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def _evaluate_schedule(name: str, instance, when: dt.datetime, market_source: str = "demo"):
    schedule = defs.get_schedule_def(name)
    repository = defs.get_repository_def()
    resources = {"market_source": MarketSourceResource(source=market_source)}  # what Definitions binds
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=when, repository_def=repository, resources=resources
    ) as context:
        return schedule.evaluate_tick(context)


def _materialize(instance, asset: str, partition: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=partition))


def _check_result(instance, key: dg.AssetCheckKey, partition: str, passed: bool) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=passed,
            partition=partition,
            severity=dg.AssetCheckSeverity.ERROR,
        )
    )


def test_market_schedule_runs_open_days_and_skips_closed_ones():
    with dg.instance_for_test() as instance:
        tick = _evaluate_schedule("daily_market_schedule", instance, _at(DAY, "16:00"))
        assert [r.partition_key for r in tick.run_requests] == [DAY]
        closed = _evaluate_schedule("daily_market_schedule", instance, _at("2024-10-31", "16:00"))
        assert not closed.run_requests and "Typhoon" in closed.skip_message


def test_strategies_wait_for_indicators_and_their_blocking_checks():
    keys = indicator_check_keys()
    # Runless check evaluations are unique per (check, partition), so each case gets its own instance.
    with dg.instance_for_test() as instance:
        tick = _evaluate_schedule("strategies_schedule", instance, _at(DAY, "16:35"))
        assert not tick.run_requests and "not materialised yet" in tick.skip_message
        for asset in ("technical_indicators", "fundamental_indicators", "chip_indicators"):
            _materialize(instance, asset, DAY)
        _check_result(instance, keys[0], DAY, passed=False)
        tick = _evaluate_schedule("strategies_schedule", instance, _at(DAY, "16:35"))
        assert not tick.run_requests and keys[0].name in tick.skip_message
    with dg.instance_for_test() as instance:
        for asset in ("technical_indicators", "fundamental_indicators", "chip_indicators"):
            _materialize(instance, asset, DAY)
        for key in keys:
            _check_result(instance, key, DAY, passed=True)
        tick = _evaluate_schedule("strategies_schedule", instance, _at(DAY, "16:35"))
        assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [(DAY, f"strategies_job:{DAY}")]


SIGNALS_MATCH = dg.AssetCheckKey(dg.AssetKey("strategy_signals"), "signals_match_executions")


def test_notify_and_stats_wait_for_strategy_signals_and_its_blocking_check():
    """Runless events here; qrl_platform_tests/daily_flow/test_gating.py drives the same gate with real runs."""
    with dg.instance_for_test() as instance:
        for name in ("notify_m13_schedule", "strategy_stats_schedule"):
            assert "strategy_signals" in _evaluate_schedule(name, instance, _at(DAY, "16:45")).skip_message
        _materialize(instance, "strategy_signals", DAY)
        for name in ("notify_m13_schedule", "strategy_stats_schedule"):
            tick = _evaluate_schedule(name, instance, _at(DAY, "17:00"))
            assert not tick.run_requests
            assert tick.skip_message == (
                f"{DAY}: blocking check(s) not evaluated yet: strategy_signals:signals_match_executions"
            )
        _check_result(instance, SIGNALS_MATCH, DAY, passed=True)
        for name in ("notify_m13_schedule", "strategy_stats_schedule"):
            assert _evaluate_schedule(name, instance, _at(DAY, "17:00")).run_requests[0].partition_key == DAY


def test_slow_cadence_schedules_target_the_published_period():
    with dg.instance_for_test() as instance:
        revenue = _evaluate_schedule("monthly_revenue_schedule", instance, _at("2024-04-11", "08:00"))
        assert revenue.run_requests[0].partition_key == "2024-03-01"
        q3 = _evaluate_schedule("financials_schedule", instance, _at("2024-11-15", "08:00"))
        assert q3.run_requests[0].partition_key == "2024-07-01"
        q4 = _evaluate_schedule("financials_schedule", instance, _at("2025-04-01", "08:00"))
        assert q4.run_requests[0].partition_key == "2024-10-01"
        weekly = _evaluate_schedule("shareholding_schedule", instance, _at("2024-03-09", "10:00"))
        assert weekly.run_requests[0].partition_key == "2024-03-08"


@pytest.mark.parametrize(
    ("name", "when", "key"),
    [
        ("monthly_revenue_schedule", ("2024-04-11", "08:00"), "2024-03-01"),
        ("financials_schedule", ("2024-11-15", "08:00"), "2024-07-01"),
        ("shareholding_schedule", ("2024-03-09", "10:00"), "2024-03-08"),
    ],
)
def test_slow_cadence_schedules_run_in_live_mode_too(name, when, key):
    """The live source provides MOPS revenue and financials and TDCC shareholding: no "not provided" skip."""
    with dg.instance_for_test() as instance:
        result = _evaluate_schedule(name, instance, _at(*when), market_source="live")
    assert [r.partition_key for r in result.run_requests] == [key]


def test_a_source_without_a_table_makes_its_schedule_skip_with_the_reason(monkeypatch):
    from qrl_platform.market.live import LiveMarketSource

    monkeypatch.setattr(LiveMarketSource, "provides", LiveMarketSource.provides - {"financials"})
    with dg.instance_for_test() as instance:
        result = _evaluate_schedule("financials_schedule", instance, _at("2024-11-15", "08:00"), market_source="live")
    assert not result.run_requests
    assert result.skip_message == "financials: the live market source does not provide this table; nothing to ingest"


def _evaluate_sensor(name: str, instance, now: dt.datetime, monkeypatch, **resources):
    monkeypatch.setattr(sensors, "current_time", lambda: now)
    sensor = defs.get_sensor_def(name)
    context = dg.build_sensor_context(instance=instance, resources=resources or None, definitions=defs)
    return sensor.evaluate_tick(context)


def test_catchup_sensor_launches_late_stages_once_ready(monkeypatch):
    with dg.instance_for_test() as instance:
        early = _evaluate_sensor("daily_flow_catchup_sensor", instance, _at(DAY, "16:20"), monkeypatch)
        assert not early.run_requests
        for asset in ("technical_indicators", "fundamental_indicators", "chip_indicators"):
            _materialize(instance, asset, DAY)
        for key in indicator_check_keys():
            _check_result(instance, key, DAY, passed=True)
        late = _evaluate_sensor("daily_flow_catchup_sensor", instance, _at(DAY, "16:50"), monkeypatch)
        assert [r.job_name for r in late.run_requests] == ["strategies_job"]
        _materialize(instance, "strategy_signals", DAY)
        _check_result(instance, SIGNALS_MATCH, DAY, passed=True)
        later = _evaluate_sensor("daily_flow_catchup_sensor", instance, _at(DAY, "16:55"), monkeypatch)
        # Stats waits for 17:00; notify is due.
        assert sorted(r.job_name for r in later.run_requests) == ["notify_m13_job", "strategies_job"]
