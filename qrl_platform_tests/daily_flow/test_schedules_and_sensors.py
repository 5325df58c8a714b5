"""Schedules (cron, timezone, gates) evaluated with build_schedule_context over a real instance, and
the daily flow's automation conditions driven tick by tick with `dg.evaluate_automation_conditions`."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from qrl_platform.definitions import defs
from qrl_platform.defs.daily_flow.conditions import STRATEGIES, STRATEGIES_CONDITION, MarketOpen
from qrl_platform.defs.daily_flow.sensors import RETRY_FAILED_STEPS, STAGE_JOBS, stage_sensor_name
from qrl_platform.defs.job_tags import INDICATORS, STAGE_TAG
from qrl_platform.defs.partitions import trading_day
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.daily_flow.automation_driver import indicator_check_keys, requested, tick, unmet
from qrl_platform_tests.test_definitions import SHIPPED_SENSORS

TZ = ZoneInfo("Asia/Taipei")
DAY = "2024-03-05"  # a Tuesday


def _at(date: str, hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.fromisoformat(date).replace(hour=hour, minute=minute, tzinfo=TZ)


EXPECTED = {
    "daily_market_schedule": ("0 16 * * 1-5", "daily_market_job"),
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
    for name in SHIPPED_SENSORS:
        assert defs.get_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING


def _evaluate_schedule(name: str, instance, when: dt.datetime, market_source: str = "demo"):
    schedule = defs.get_schedule_def(name)
    repository = defs.get_repository_def()
    resources = {"market_source": configured_resources(market_source=market_source)["market_source"]}
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


def test_each_stage_sensor_targets_its_asset_and_gives_runs_its_named_jobs_tags():
    graph = defs.resolve_asset_graph()
    for stage, job in STAGE_JOBS:
        sensor = defs.get_sensor_def(stage_sensor_name(job.name))
        assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
        assert sensor.asset_selection.resolve(graph) == {dg.AssetKey(stage.asset)}
        assert sensor.run_tags == {**job.tags, **RETRY_FAILED_STEPS, STAGE_TAG: job.name}
        assert {"qrl/estimate_seconds", "dagster/max_retries"} <= set(sensor.run_tags)
        assert sensor.run_tags["dagster/retry_on_asset_or_op_failure"] == "true"
        assert graph.get(dg.AssetKey(stage.asset)).automation_condition is not None
    assert defs.get_sensor_def("strategies_automation").run_tags["qrl/warehouse-writer"] == "strategy_signals"


def _materialize_indicators(instance, day: str, passed: bool = True) -> None:
    for asset in INDICATORS:
        _materialize(instance, asset, day)
    for key in indicator_check_keys():
        _check_result(instance, key, day, passed=passed)


def test_strategies_wait_for_indicators_and_their_blocking_checks():
    keys = indicator_check_keys()
    # Runless check evaluations are unique per (check, partition), so each case gets its own instance.
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(DAY, "16:00"))
        waiting = tick(instance, _at(DAY, "16:35"), first.cursor)
        assert requested(waiting) == {}
        assert "upstream ready: technical_indicators, fundamental_indicators, chip_indicators" in unmet(
            waiting, "strategy_signals"
        )
        for asset in INDICATORS:
            _materialize(instance, asset, DAY)
        _check_result(instance, keys[0], DAY, passed=False)
        failed = tick(instance, _at(DAY, "16:36"), waiting.cursor)
        assert requested(failed) == {}
        reasons = unmet(failed, "strategy_signals")
        assert f"{keys[0].asset_key.to_user_string()}:{keys[0].name} not passed" in reasons
        # The other checks were never evaluated: not passed either, so the stage waits for them too.
        assert len([r for r in reasons if r.endswith("not passed")]) == len(keys)
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(DAY, "16:00"))
        _materialize_indicators(instance, DAY)
        ready = tick(instance, _at(DAY, "16:35"), first.cursor)
        assert requested(ready) == {"strategy_signals": [DAY]}
        again = tick(instance, _at(DAY, "16:36"), ready.cursor)
        assert requested(again) == {}  # never twice


def test_a_stage_never_runs_before_its_time_and_runs_as_soon_as_late_upstream_is_ready():
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(DAY, "15:00"))
        _materialize_indicators(instance, DAY)
        early = tick(instance, _at(DAY, "16:20"), first.cursor)
        assert requested(early) == {}
        assert unmet(early, "strategy_signals") == ["16:35 passed since its last run"]
        on_time = tick(instance, _at(DAY, "16:35"), early.cursor)
        assert requested(on_time) == {"strategy_signals": [DAY]}
    with dg.instance_for_test() as instance:  # the upstream arrives after the stage's time
        first = tick(instance, _at(DAY, "16:00"))
        late = tick(instance, _at(DAY, "16:40"), first.cursor)
        assert requested(late) == {}
        _materialize_indicators(instance, DAY)
        caught_up = tick(instance, _at(DAY, "17:10"), late.cursor)
        assert requested(caught_up) == {"strategy_signals": [DAY]}
        assert requested(tick(instance, _at(DAY, "17:20"), caught_up.cursor)) == {}


def test_a_day_already_materialised_by_hand_is_not_run_again():
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(DAY, "16:00"))
        _materialize_indicators(instance, DAY)
        _materialize(instance, "strategy_signals", DAY)  # e.g. `qrl run-all` at 16:10
        due = tick(instance, _at(DAY, "16:40"), first.cursor)
        assert requested(due) == {}
        assert unmet(due, "strategy_signals") == ["not materialised for the day yet"]


SIGNALS_MATCH = dg.AssetCheckKey(dg.AssetKey("strategy_signals"), "signals_match_executions")


def test_notify_and_stats_wait_for_strategy_signals_and_its_blocking_check():
    """Runless events here; qrl_platform_tests/daily_flow/test_gating.py drives the same conditions with real runs."""
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(DAY, "16:00"))
        missing = tick(instance, _at(DAY, "16:45"), first.cursor)
        assert unmet(missing, "m13_notification")[0] == "upstream ready: strategy_signals"
        assert unmet(missing, "strategy_stats") == ["17:00 passed since its last run"]
        _materialize(instance, "strategy_signals", DAY)  # written before the notification's 16:45
        unchecked = tick(instance, _at(DAY, "16:50"), missing.cursor)
        assert requested(unchecked) == {}
        assert "strategy_signals:signals_match_executions not passed" in unmet(unchecked, "m13_notification")
        _check_result(instance, SIGNALS_MATCH, DAY, passed=True)
        notify = tick(instance, _at(DAY, "16:55"), unchecked.cursor)
        assert requested(notify) == {"m13_notification": [DAY]}  # stats waits for 17:00
        stats = tick(instance, _at(DAY, "17:00"), notify.cursor)
        assert requested(stats) == {"strategy_stats": [DAY]}
        assert requested(tick(instance, _at(DAY, "17:30"), stats.cursor)) == {}


def test_closed_days_do_nothing():
    closed = "2024-10-31"  # Typhoon Kong-rey: a Thursday the market did not trade
    with dg.instance_for_test() as instance:
        first = tick(instance, _at(closed, "16:00"))
        # A backfill of the market job materialises the closed day empty, and its checks pass.
        _materialize_indicators(instance, closed)
        _materialize(instance, "strategy_signals", closed)
        _check_result(instance, SIGNALS_MATCH, closed, passed=True)
        later = tick(instance, _at(closed, "17:30"), first.cursor)
        assert requested(later) == {}
        assert "market_open" in unmet(later, "strategy_signals")


def _stand_in_defs(condition: dg.AutomationCondition) -> dg.Definitions:
    """strategy_signals over its three indicator inputs, with `condition` (no checks: only the timing
    and calendar parts of a condition are compared)."""
    indicators = [dg.AssetSpec(asset, partitions_def=trading_day) for asset in INDICATORS]
    signals = dg.AssetSpec(
        STRATEGIES.asset, deps=INDICATORS, partitions_def=trading_day, automation_condition=condition
    )
    return dg.Definitions(assets=[*indicators, signals])


def test_dagsters_own_conditions_run_a_closed_day_and_on_cron_waits_a_day_for_upstream_written_before_the_tick():
    """Why the stage condition is not Dagster's `on_cron` and why it has the calendar rule.

    * `on_cron` wants every input updated after the tick: inputs written at 16:30 for 16:35 never count.
    * Without `MarketOpen`, a closed weekday whose partition was materialised (empty) is run."""
    on_cron = _stand_in_defs(dg.AutomationCondition.on_cron(STRATEGIES.cron, "Asia/Taipei"))
    ours = _stand_in_defs(STRATEGIES_CONDITION)
    with dg.instance_for_test() as instance:
        cursors = {"on_cron": tick(instance, _at(DAY, "16:00"), definitions=on_cron).cursor}
        cursors["ours"] = tick(instance, _at(DAY, "16:00"), definitions=ours).cursor
        for asset in INDICATORS:
            _materialize(instance, asset, DAY)  # 16:30, before the 16:35 tick
        first = {
            "on_cron": tick(instance, _at(DAY, "16:30"), cursors["on_cron"], on_cron),
            "ours": tick(instance, _at(DAY, "16:30"), cursors["ours"], ours),
        }
        after = {
            "on_cron": tick(instance, _at(DAY, "16:40"), first["on_cron"].cursor, on_cron),
            "ours": tick(instance, _at(DAY, "16:40"), first["ours"].cursor, ours),
        }
        assert requested(after["ours"]) == {"strategy_signals": [DAY]}
        assert requested(after["on_cron"]) == {}
        assert requested(tick(instance, _at(DAY, "23:00"), after["on_cron"].cursor, on_cron)) == {}

    closed = "2024-10-31"
    without_calendar = _stand_in_defs(
        STRATEGIES_CONDITION.replace("market_open", dg.AutomationCondition.in_latest_time_window())
    )
    with dg.instance_for_test() as instance:
        first = {
            "without": tick(instance, _at(closed, "16:00"), definitions=without_calendar),
            "ours": tick(instance, _at(closed, "16:00"), definitions=ours),
        }
        for asset in INDICATORS:
            _materialize(instance, asset, closed)
        assert requested(tick(instance, _at(closed, "16:40"), first["without"].cursor, without_calendar)) == {
            "strategy_signals": [closed]
        }
        assert requested(tick(instance, _at(closed, "16:40"), first["ours"].cursor, ours)) == {}
    assert isinstance(MarketOpen(), dg.AutomationCondition)


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
