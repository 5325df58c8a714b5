"""The daily flow's gate with real runs: a failed blocking check holds the next stage, fixing the day
releases it (SPEC S9; rule in qrl_platform/defs/gating.py).

* signals_match_executions: the real strategies_job on demo quotes with synthetic indicator frames,
  then one signal row deleted and the checks re-run → notify and stats do not launch; the day
  re-run → they launch.
* the indicator quality checks: the real multi-asset checks in the run that materialises the
  indicator partition (the indicator frames are written by stand-in assets of the same keys, since
  the real M07 needs a year of history) → strategies do not launch; a clean frame → they launch.
"""

import datetime as dt
import math

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from qrl_platform.definitions import RESOURCES, defs
from qrl_platform.defs import clock
from qrl_platform.defs.indicators.checks import INDICATOR_CHECKS
from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.partitions import trading_day
from qrl_platform.defs.strategies.assets import IndicatorChecksFailed, strategies, strategy_signals
from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import schema
from qrl_platform_tests.strategy.conftest import synthetic_indicators, write_synthetic_indicators

DAY = "2024-03-05"  # a Tuesday
DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]
TZ = dt.timezone(dt.timedelta(hours=8))


def _at(hhmm: str) -> dt.datetime:
    hour, minute = map(int, hhmm.split(":"))
    return dt.datetime.fromisoformat(DAY).replace(hour=hour, minute=minute, tzinfo=TZ)


def _schedule(name: str, instance, hhmm: str):
    with dg.build_schedule_context(
        instance=instance, scheduled_execution_time=_at(hhmm), repository_def=defs.get_repository_def()
    ) as context:
        return defs.get_schedule_def(name).evaluate_tick(context)


def _catch_up(instance, hhmm: str, monkeypatch):
    monkeypatch.setattr(clock, "current_time", lambda: _at(hhmm))
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    return defs.get_sensor_def("daily_flow_catchup_sensor").evaluate_tick(context)


@pytest.fixture
def day_with_quotes(qrl_home, monkeypatch):
    """Demo quotes and synthetic indicator frames for 2024-03-04/05; alerts to the log only."""
    monkeypatch.setenv("QRL_ALERT_CHANNELS", "log")
    with dg.instance_for_test() as instance:
        dg.materialize(
            [daily_quotes],
            resources=RESOURCES,
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2024-03-04", "dagster/asset_partition_range_end": DAY},
        )
        write_synthetic_indicators(FrameStore(settings().qrl_home), DAYS)
        dg.materialize([strategies], resources=RESOURCES, instance=instance)
        yield instance


def _delete_one_signal() -> None:
    from qrl_platform.defs.resources import WarehouseResource

    engine = WarehouseResource().get().engine
    with engine.begin() as conn:
        victim = conn.execute(
            sa.select(schema.strategy_signals.c.signal_id)
            .where(schema.strategy_signals.c.trade_date == dt.date.fromisoformat(DAY))
            .limit(1)
        ).scalar_one()
        conn.execute(sa.delete(schema.strategy_signals).where(schema.strategy_signals.c.signal_id == victim))


def _rerun_strategy_checks(instance) -> dg.ExecuteInProcessResult:
    """The checks of strategy_signals alone for DAY, as the UI's "Execute checks" launches them."""
    checks_job = dg.define_asset_job(
        "strategy_signals_checks",
        selection=dg.AssetSelection.checks_for_assets(strategy_signals),
    )
    checks_defs = dg.Definitions(
        assets=[strategy_signals], asset_checks=STRATEGY_CHECKS, jobs=[checks_job], resources=RESOURCES
    )
    return checks_defs.resolve_job_def("strategy_signals_checks").execute_in_process(
        instance=instance, tags={"dagster/partition": DAY}, raise_on_error=False
    )


def test_a_failed_signals_match_executions_holds_notify_and_stats_until_the_day_is_rerun(day_with_quotes, monkeypatch):
    instance = day_with_quotes
    strategies = defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY)
    assert strategies.success
    assert {e.check_name: e.passed for e in strategies.get_asset_check_evaluations()}["signals_match_executions"]
    for name in ("notify_m13_schedule", "strategy_stats_schedule"):
        assert [r.partition_key for r in _schedule(name, instance, "17:00").run_requests] == [DAY]

    _delete_one_signal()
    recheck = _rerun_strategy_checks(instance)
    failed = {e.check_name: e for e in recheck.get_asset_check_evaluations()}["signals_match_executions"]
    assert not failed.passed and failed.metadata["mismatched"].value == 1

    for name in ("notify_m13_schedule", "strategy_stats_schedule"):
        tick = _schedule(name, instance, "17:00")
        assert tick.run_requests == []
        assert f"{DAY}: blocking check(s) failed: strategy_signals:signals_match_executions failed" in tick.skip_message
        assert "disagree with the stored signals" in tick.skip_message  # the check's own explanation
    late = _catch_up(instance, "17:30", monkeypatch)
    assert late.run_requests == []
    assert late.skip_message.count("signals_match_executions failed") == 2  # notify and stats both wait

    fixed = defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY)
    assert {e.check_name: e.passed for e in fixed.get_asset_check_evaluations()}["signals_match_executions"]
    for name, job in (("notify_m13_schedule", "notify_m13_job"), ("strategy_stats_schedule", "strategy_stats_job")):
        tick = _schedule(name, instance, "17:00")
        assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [(DAY, f"{job}:{DAY}")]
    caught_up = _catch_up(instance, "17:30", monkeypatch)
    assert sorted(r.job_name for r in caught_up.run_requests) == ["notify_m13_job", "strategy_stats_job"]


def _stand_in_indicators(poisoned: bool) -> list[dg.AssetsDefinition]:
    """Assets with the indicator keys that store the synthetic frame of DAY (optionally with +inf in
    technical_indicators.rsi_14 for one stock); the checks that judge them are the real ones."""

    def build(asset: str) -> dg.AssetsDefinition:
        @dg.asset(name=asset, partitions_def=trading_day)
        def _indicator(context: dg.AssetExecutionContext) -> None:
            store = FrameStore(settings().qrl_home)
            frame = synthetic_indicators(store.read("daily_quotes", DAY), seed=dt.date(2024, 3, 5).toordinal())[asset]
            if poisoned and asset == "technical_indicators":
                frame = frame.with_columns(
                    pl.when(pl.int_range(pl.len()) == 0).then(math.inf).otherwise(pl.col("rsi_14")).alias("rsi_14")
                )
            store.write(asset, DAY, frame)

        return _indicator

    return [build(a) for a in ("technical_indicators", "fundamental_indicators", "chip_indicators")]


def test_a_failed_indicator_quality_check_holds_the_strategies_until_the_day_is_fixed(day_with_quotes, monkeypatch):
    instance = day_with_quotes
    broken = dg.materialize(
        [*_stand_in_indicators(poisoned=True), *INDICATOR_CHECKS],
        resources=RESOURCES,
        instance=instance,
        partition_key=DAY,
        raise_on_error=False,
    )
    assert not broken.success  # the failed blocking check fails its step
    failed = [(e.asset_key.path[-1], e.check_name) for e in broken.get_asset_check_evaluations() if not e.passed]
    assert failed == [("technical_indicators", "no_infinities")]

    tick = _schedule("strategies_schedule", instance, "16:35")
    assert tick.run_requests == []
    assert f"{DAY}: blocking check(s) failed: technical_indicators:no_infinities failed" in tick.skip_message
    late = _catch_up(instance, "16:50", monkeypatch)
    assert late.run_requests == [] and "technical_indicators:no_infinities failed" in late.skip_message
    # Launched by hand anyway, the strategies refuse the day with the same reason, at once: the job's
    # step retry policy does not retry a refusal (only fixing the day helps).
    with pytest.raises(IndicatorChecksFailed, match="technical_indicators:no_infinities failed"):
        defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY)
    refused = instance.get_run_records(filters=dg.RunsFilter(job_name="strategies_job"), limit=1)[0].dagster_run
    retries = instance.get_records_for_run(refused.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY).records
    assert refused.status == dg.DagsterRunStatus.FAILURE and retries == []

    fixed = dg.materialize(
        [*_stand_in_indicators(poisoned=False), *INDICATOR_CHECKS],
        resources=RESOURCES,
        instance=instance,
        partition_key=DAY,
    )
    assert fixed.success and all(e.passed for e in fixed.get_asset_check_evaluations())
    tick = _schedule("strategies_schedule", instance, "16:35")
    assert [(r.partition_key, r.run_key) for r in tick.run_requests] == [(DAY, f"strategies_job:{DAY}")]
    # The catch-up sensor releases it too (the failed manual run above does not count as done).
    assert [r.job_name for r in _catch_up(instance, "16:50", monkeypatch).run_requests] == ["strategies_job"]
