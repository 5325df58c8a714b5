"""The daily flow's automation conditions with real runs: a failed blocking check holds the next
stage, fixing the day releases it (conditions in qrl_platform/defs/daily_flow/conditions.py).

* signals_match_executions: the real strategies_job on demo quotes with synthetic indicator frames,
  then one signal row deleted and the checks re-run → notify and stats are not requested; the day
  re-run → they are, and the runs their sensors launch succeed with the named jobs' tags.
* the indicator quality checks: the real multi-asset checks in the run that materialises the
  indicator partition (the indicator frames are written by stand-in assets of the same keys, since
  the real technical indicators need a year of history) → strategies are not requested; a clean
  frame → they are.
"""

import datetime as dt
import math

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa

from qrl_platform.definitions import RESOURCES, defs
from qrl_platform.defs.factors.checks import INDICATOR_CHECKS
from qrl_platform.defs.job_tags import STAGE_TAG
from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.partitions import trading_day
from qrl_platform.defs.strategies.assets import IndicatorChecksFailed, strategies, strategy_signals
from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import schema
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.daily_flow.automation_driver import at, launch, requested, tick, unmet
from qrl_platform_tests.strategies.conftest import synthetic_indicators, write_synthetic_indicators

DAY = "2024-03-05"  # a Tuesday
DAYS = [dt.date(2024, 3, 4), dt.date(2024, 3, 5)]


def _tick(instance, hhmm: str, cursor=None):
    return tick(instance, at(DAY, hhmm), cursor)


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

    engine = configured_resources()["warehouse"].get().engine
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


def test_a_failed_signals_match_executions_holds_notify_and_stats_until_the_day_is_rerun(day_with_quotes):
    instance = day_with_quotes
    before = _tick(instance, "16:00")
    strategies = defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY)
    assert strategies.success
    assert {e.check_name: e.passed for e in strategies.get_asset_check_evaluations()}["signals_match_executions"]
    # Ready: what a tick at 17:00 would request (the cursor of 16:00 is reused below, as if it had not run).
    assert requested(_tick(instance, "17:00", before.cursor)) == {"m13_notification": [DAY], "strategy_stats": [DAY]}

    _delete_one_signal()
    recheck = _rerun_strategy_checks(instance)
    failed = {e.check_name: e for e in recheck.get_asset_check_evaluations()}["signals_match_executions"]
    assert not failed.passed and failed.metadata["mismatched"].value == 1

    held = _tick(instance, "17:00", before.cursor)
    assert requested(held) == {}
    for asset in ("m13_notification", "strategy_stats"):
        assert unmet(held, asset) == [
            "upstream ready: strategy_signals",
            "strategy_signals:signals_match_executions not passed",
        ]
    still = _tick(instance, "17:30", held.cursor)
    assert requested(still) == {}

    fixed = defs.resolve_job_def("strategies_job").execute_in_process(instance=instance, partition_key=DAY)
    assert {e.check_name: e.passed for e in fixed.get_asset_check_evaluations()}["signals_match_executions"]
    released = _tick(instance, "17:31", still.cursor)
    assert requested(released) == {"m13_notification": [DAY], "strategy_stats": [DAY]}
    for asset, job in (("m13_notification", "notify_m13_job"), ("strategy_stats", "strategy_stats_job")):
        run = launch(instance, asset, DAY)
        assert run.success, asset
        tags = instance.get_run_by_id(run.run_id).tags
        assert tags[STAGE_TAG] == job
        assert {k: tags[k] for k in defs.resolve_job_def(job).tags} == dict(defs.resolve_job_def(job).tags)
    assert requested(_tick(instance, "17:32", released.cursor)) == {}  # never twice


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


def test_a_failed_indicator_quality_check_holds_the_strategies_until_the_day_is_fixed(day_with_quotes):
    instance = day_with_quotes
    before = _tick(instance, "16:00")
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

    held = _tick(instance, "16:35", before.cursor)
    assert requested(held) == {}
    assert "technical_indicators:no_infinities not passed" in unmet(held, "strategy_signals")
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
    # Released (the failed manual run above does not count as the stage's run).
    released = _tick(instance, "16:50", held.cursor)
    assert requested(released) == {"strategy_signals": [DAY]}
