"""strategy_signals / strategy_stats / checks through Dagster, on the demo market with synthetic
indicator frames (the real indicator assets are built in parallel; the lead adds the full chain)."""

import base64
import datetime as dt
import shutil

import dagster as dg
import polars as pl
import pytest
import yaml

from qrl_platform.defs.market.assets import daily_quotes
from qrl_platform.defs.partitions import trading_day
from qrl_platform.defs.resources import AlertsResource, FrameStoreResource, MarketSourceResource, WarehouseResource
from qrl_platform.defs.strategies.assets import STRATEGY_ASSETS, strategies, strategy_signals, strategy_stats
from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS, build_strategy_checks
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import BUILTIN_DIR
from qrl_platform.warehouse import Warehouse

DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8, 11, 12, 13, 14, 15)]


def _resources(**extra) -> dict:
    return {
        "market_source": MarketSourceResource(),
        "frames": FrameStoreResource(),
        "warehouse": WarehouseResource(),
        "alerts": AlertsResource(dedupe_state_path="memory"),  # log channel only
        **extra,
    }


def _range(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture
def market(qrl_home, indicator_writer):
    """Demo quotes for two March 2024 weeks and synthetic indicators for them, in an isolated QRL_HOME."""
    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([daily_quotes], resources=_resources(), instance=instance, tags=_range("2024-03-04", "2024-03-15"))
    indicator_writer(FrameStore(settings().qrl_home), DAYS)
    return instance


def _warehouse() -> Warehouse:
    return WarehouseResource().get()


def _signals_config(**config) -> dict:
    return {"ops": {"strategy_signals": {"config": config}}}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_backfill_then_rerun_one_day(market):
    result = dg.materialize(
        [*STRATEGY_ASSETS, *STRATEGY_CHECKS],
        resources=_resources(),
        instance=market,
        tags=_range("2024-03-04", "2024-03-06"),
    )
    assert result.success
    assert len(market.get_runs()) == 2  # quotes + one run for the whole strategy range
    meta = result.asset_materializations_for_node("strategy_signals")[0].metadata
    assert meta["strategies_run"].value == 10 and meta["strategies_failed"].value == 0
    assert meta["trading_days"].value == 3
    total = meta["total_signals"].value
    assert total == meta["buy_signals"].value + meta["sell_signals"].value + meta["hold_signals"].value > 0
    assert "ms)" in meta["slowest_strategy"].value
    table = meta["strategy_results"].value
    assert len(table.records) == 10 and {r.data["status"] for r in table.records} == {"SUCCESS"}
    assert all(check.passed for check in _checks(result).values()) and len(_checks(result)) == 3

    warehouse = _warehouse()
    signals = warehouse.read_table("strategy_signals")
    executions = warehouse.read_table("strategy_executions")
    assert signals.height == total == executions["signals_generated"].sum()
    assert executions.height == 30 and executions["run_id"].unique().to_list() == [result.run_id]
    day = signals.filter(pl.col("trade_date") == dt.date(2024, 3, 5)).sort("signal_id")

    # Re-materialise one day: same rows and ids, a second execution per strategy for that day.
    again = dg.materialize(
        [strategy_signals, *STRATEGY_CHECKS], resources=_resources(), instance=market, partition_key="2024-03-05"
    )
    assert again.success
    signals_after = warehouse.read_table("strategy_signals")
    assert signals_after.height == signals.height
    day_after = signals_after.filter(pl.col("trade_date") == dt.date(2024, 3, 5)).sort("signal_id")
    assert day_after.select("signal_id", "signal", "score", "confidence", "factor_values").equals(
        day.select("signal_id", "signal", "score", "confidence", "factor_values")
    )
    assert set(day_after["execution_id"]).isdisjoint(set(day["execution_id"]))
    per_day = warehouse.read_table("strategy_executions").group_by("execution_date").len().sort("execution_date")
    assert per_day["len"].to_list() == [10, 20, 10]
    assert _checks(again)["signals_match_executions"].passed
    # The three checks are one step of the run, beside the asset's own, with their own severities.
    assert {e.step_key for e in again.all_events if e.step_key} == {"strategy_signals", "strategy_signals_checks"}
    assert {(name, e.blocking, e.severity) for name, e in _checks(again).items()} == {
        ("signals_match_executions", True, dg.AssetCheckSeverity.ERROR),
        ("signals_not_all_zero", False, dg.AssetCheckSeverity.WARN),
        ("strategy_failure_rate", False, dg.AssetCheckSeverity.ERROR),
    }


def test_stats_after_signals_have_a_hit_rate_once_horizons_elapse(market):
    assets = [*STRATEGY_ASSETS, *STRATEGY_CHECKS]
    assert dg.materialize(
        assets, resources=_resources(), instance=market, tags=_range("2024-03-04", "2024-03-06")
    ).success
    result = dg.materialize([strategy_stats], resources=_resources(), instance=market, partition_key="2024-03-15")
    assert result.success
    everything = _warehouse().read_table("strategy_stats")  # the first run also stored the 4th-6th
    assert everything["as_of_date"].unique().sort().to_list() == [dt.date(2024, 3, d) for d in (4, 5, 6, 15)]
    stats = everything.filter(pl.col("as_of_date") == dt.date(2024, 3, 15))
    assert stats.height == 10 * 3
    # Mean reversion (horizon 5): signals of the 4th–6th exit by the 13th, so they are judged as of the 15th;
    # value (horizon 60) has nothing judged yet.
    row = stats.filter((pl.col("strategy_id") == "STG_MEAN_REVERSION_001") & (pl.col("period_days") == 30)).row(
        0, named=True
    )
    assert row["evaluated_signals"] == row["buy_count"] + row["sell_count"] > 0 and 0 <= row["hit_rate"] <= 1
    value = stats.filter((pl.col("strategy_id") == "STG_VALUE_001") & (pl.col("period_days") == 30)).row(0, named=True)
    assert value["evaluated_signals"] == 0 and value["hit_rate"] is None
    summary = _warehouse().read_table("strategies")
    assert summary["total_executions"].to_list() == [3] * 10
    meta = result.asset_materializations_for_node("strategy_stats")[0].metadata
    assert meta["dagster/row_count"].value == 30 and len(meta["stats"].value.records) == 30


def test_dry_run_writes_nothing(market):
    assert dg.materialize([strategies], resources=_resources(), instance=market).success
    result = dg.materialize(
        [strategy_signals],
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
        run_config=_signals_config(save_results=False, strategy_ids=["STG_MOMENTUM_001", "STG_VALUE_001"]),
    )
    assert result.success
    meta = result.asset_materializations_for_node("strategy_signals")[0].metadata
    assert meta["dry_run"].value is True and meta["strategies_run"].value == 2 and meta["total_signals"].value > 0
    assert "execution_ids" not in meta
    warehouse = _warehouse()
    for table in ("strategy_signals", "strategy_executions", "job_execution_details"):
        assert warehouse.read_table(table).height == 0


def test_run_config_subset_and_universe_override(market):
    assert dg.materialize([strategies], resources=_resources(), instance=market).success
    config = _signals_config(
        strategy_ids=["STG_MOMENTUM_001"],
        market_type="TWSE",
        save_all_signals=False,
        include_factor_values=False,
        include_diagnostics=False,
    )
    result = dg.materialize(
        [strategy_signals], resources=_resources(), instance=market, partition_key="2024-03-05", run_config=config
    )
    assert result.success
    signals = _warehouse().read_table("strategy_signals")
    assert signals["strategy_id"].unique().to_list() == ["STG_MOMENTUM_001"]
    assert set(signals["signal"]) <= {"BUY", "SELL"} and signals["factor_values"].null_count() == signals.height
    quotes = FrameStore(settings().qrl_home).read("daily_quotes", "2024-03-05")
    twse = set(quotes.filter(pl.col("market") == "TWSE")["stock_id"])
    assert set(signals["stock_id"]) <= twse
    assert _warehouse().read_table("strategy_executions")["diagnostics"].to_list() == [None]

    bad = dg.materialize(
        [strategy_signals],
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
        run_config=_signals_config(strategy_ids=["STG_NOPE_001"]),
        raise_on_error=False,
    )
    assert not bad.success
    assert "strategy_ids: unknown strategies ['STG_NOPE_001']" in _failure_message(bad)


def _failure_message(result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure)


def _strategies_dir(tmp_path, broken: int) -> str:
    """The built-ins plus `broken` strategies that read a factor the indicator frames lack."""
    directory = tmp_path / "strategies"
    shutil.copytree(BUILTIN_DIR, directory)
    for i in range(broken):
        raw = {
            "strategy_id": f"STG_BROKEN_{i:03d}",
            "name": "Broken",
            "status": "ACTIVE",
            "version": 1,
            "horizon_days": 5,
            "rules": [{"factor": "big_holder_pct", "op": ">", "value": 50, "weight": 1}],
            "signal": {"buy_above": 1.0},
        }
        (directory / f"broken_{i}.yaml").write_text(yaml.safe_dump(raw))
    return str(directory)


def test_one_broken_strategy_is_recorded_and_the_others_complete(market, tmp_path, indicator_writer):
    indicator_writer(FrameStore(settings().qrl_home), DAYS[:2], drop={"chip_indicators": ["big_holder_pct"]})
    config = {"ops": {"strategies": {"config": {"directory": _strategies_dir(tmp_path, broken=1)}}}}
    result = dg.materialize(
        [*STRATEGY_ASSETS, *STRATEGY_CHECKS],
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
        run_config=config,
    )
    assert result.success
    meta = result.asset_materializations_for_node("strategy_signals")[0].metadata
    assert (meta["strategies_run"].value, meta["strategies_failed"].value) == (11, 1)
    assert (
        "STG_BROKEN_000: FAILED" in meta["failed_strategies"].value
        and "big_holder_pct" in meta["failed_strategies"].value
    )
    checks = _checks(result)
    assert checks["strategy_failure_rate"].passed  # 1/11 < 30 %
    warehouse = _warehouse()
    executions = warehouse.read_table("strategy_executions")
    assert executions.filter(pl.col("status") == "FAILED")["strategy_id"].to_list() == ["STG_BROKEN_000"]
    assert executions.filter(pl.col("status") == "SUCCESS").height == 10
    details = warehouse.read_table("job_execution_details")
    assert details["strategy_id"].to_list() == ["STG_BROKEN_000"] and "big_holder_pct" in details["error_message"][0]


class RecordingAlerts(dg.ConfigurableResource):
    """Stands in for the alerts resource: remembers what was sent."""

    def send(self, level: str, title: str, message: str, **tags) -> None:
        SENT.append((level, title, message, tags))


class BrokenAlerts(dg.ConfigurableResource):
    """An alert channel that is down: the check result must still be reported."""

    def send(self, level: str, title: str, message: str, **tags) -> None:
        raise ConnectionError("slack unreachable")


SENT: list = []


def test_failure_rate_above_half_is_an_error_and_alerts(market, tmp_path, indicator_writer):
    SENT.clear()
    indicator_writer(FrameStore(settings().qrl_home), DAYS[:2], drop={"chip_indicators": ["big_holder_pct"]})
    config = {"ops": {"strategies": {"config": {"directory": _strategies_dir(tmp_path, broken=11)}}}}
    result = dg.materialize(
        [*STRATEGY_ASSETS, *STRATEGY_CHECKS],
        resources=_resources(alerts=RecordingAlerts()),
        instance=market,
        partition_key="2024-03-05",
        run_config=config,
        raise_on_error=False,
    )
    evaluation = _checks(result)["strategy_failure_rate"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.metadata["max_failure_rate"].value == pytest.approx(11 / 21, abs=1e-4)
    assert len(SENT) == 1
    level, title, message, tags = SENT[0]
    assert level == "ERROR" and title == "M11 strategy failure rate 52% on 2024-03-05"
    assert "11/21 strategies failed" in message and tags["trade_date"] == "2024-03-05"
    assert tags["source"] == "strategy_signals" and tags["dedupe_key"] == "m11-failure-rate:2024-03-05"

    # Checks re-run on their own (no partition: they judge the latest executed day) with an alert
    # channel that is down: the check result is still reported.
    checks_only = dg.materialize(
        [strategy_signals, *STRATEGY_CHECKS],
        selection=dg.AssetSelection.checks(*STRATEGY_CHECKS),
        resources=_resources(alerts=BrokenAlerts()),
        instance=market,
        raise_on_error=False,
    )
    assert not _checks(checks_only)["strategy_failure_rate"].passed


def test_checks_without_an_alerts_resource_only_log(market, tmp_path, indicator_writer):
    indicator_writer(FrameStore(settings().qrl_home), DAYS[:2], drop={"chip_indicators": ["big_holder_pct"]})
    config = {"ops": {"strategies": {"config": {"directory": _strategies_dir(tmp_path, broken=11)}}}}
    resources = _resources()
    resources.pop("alerts")
    result = dg.materialize(
        [*STRATEGY_ASSETS, *build_strategy_checks(alerts_resource_key=None)],
        resources=resources,
        instance=market,
        partition_key="2024-03-05",
        run_config=config,
        raise_on_error=False,
    )
    assert not _checks(result)["strategy_failure_rate"].passed


def test_closed_day_writes_nothing(qrl_home):
    result = dg.materialize([strategy_signals, strategy_stats], resources=_resources(), partition_key="2024-02-08")
    assert result.success
    meta = result.asset_materializations_for_node("strategy_signals")[0].metadata
    assert meta["market_closed"].value is True and "XTAI" in meta["closed_reason"].value
    assert meta["dagster/row_count"].value == 0
    assert result.asset_materializations_for_node("strategy_stats")[0].metadata["market_closed"].value is True
    assert _warehouse().read_table("strategy_executions").height == 0


def test_missing_indicator_partition_is_refused_by_name(market):
    FrameStore(settings().qrl_home).fs.rm(FrameStore(settings().qrl_home).path("fundamental_indicators", "2024-03-06"))
    result = dg.materialize(
        [*STRATEGY_ASSETS],
        resources=_resources(),
        instance=market,
        tags=_range("2024-03-05", "2024-03-06"),
        raise_on_error=False,
    )
    assert not result.success
    assert "fundamental_indicators is not materialised for 2024-03-06" in _failure_message(result)
    assert _warehouse().read_table("strategy_signals").height == 0


# Fake indicator assets with a blocking check, to test the gate across separate runs.
CHECK_PASSES = {"value": True}


def _fake_indicator(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name, partitions_def=trading_day, backfill_policy=dg.BackfillPolicy.single_run())
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        return dg.MaterializeResult()  # the frames are already in the store (fixture)

    return _asset


FAKES = [_fake_indicator(name) for name in ("technical_indicators", "fundamental_indicators", "chip_indicators")]


@dg.asset_check(asset=FAKES[0], blocking=True)
def no_infinities(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=CHECK_PASSES["value"], description=None if CHECK_PASSES["value"] else "3 infinite values in rsi_14"
    )


UPSTREAM = dg.AssetSelection.assets(*FAKES) | dg.AssetSelection.checks(no_infinities)


def test_strategies_refuse_indicators_whose_blocking_check_failed_in_an_earlier_run(market):
    everything = [*FAKES, no_infinities, *STRATEGY_ASSETS]
    CHECK_PASSES["value"] = False
    upstream = dg.materialize(
        everything,
        selection=UPSTREAM,
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
        raise_on_error=False,
    )
    assert not upstream.success  # Dagster itself fails the run on the blocking check

    refused = dg.materialize(
        everything,
        selection=["strategies", "strategy_signals"],
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
        raise_on_error=False,
    )
    assert not refused.success
    message = _failure_message(refused)
    assert "2024-03-05 technical_indicators:no_infinities failed" in message
    assert "3 infinite values in rsi_14" in message
    assert _warehouse().read_table("strategy_signals").height == 0

    CHECK_PASSES["value"] = True  # the indicators are fixed and re-materialised: strategies run
    assert dg.materialize(
        everything, selection=UPSTREAM, resources=_resources(), instance=market, partition_key="2024-03-05"
    ).success
    accepted = dg.materialize(
        everything,
        selection=["strategies", "strategy_signals"],
        resources=_resources(),
        instance=market,
        partition_key="2024-03-05",
    )
    assert accepted.success
    meta = accepted.asset_materializations_for_node("strategy_signals")[0].metadata
    # the two fakes without checks, and technical_indicators: three of its four blocking checks never ran
    assert meta["indicator_partitions_unchecked"].value == 3


def test_plot_figures_per_strategy_and_day_and_charts_on_the_last_day(market):
    from qrl_platform_tests.test_charts import WIDE_PIXELS, png_image

    signals = dg.materialize(
        [strategies, strategy_signals], resources=_resources(), instance=market, tags=_range("2024-03-04", "2024-03-06")
    )
    by_day = {m.partition: m.metadata for m in signals.asset_materializations_for_node("strategy_signals")}
    executions = _warehouse().read_table("strategy_executions")
    for day in ("2024-03-04", "2024-03-06"):
        row = executions.filter(
            (pl.col("strategy_id") == "STG_MOMENTUM_001") & (pl.col("execution_date") == dt.date.fromisoformat(day))
        ).row(0, named=True)
        meta = by_day[day]
        # Each day carries its own counts (not the range total), as top-level numbers the Plots tab charts.
        assert meta["buy/STG_MOMENTUM_001"].value == row["buy_signals"]
        assert meta["sell/STG_MOMENTUM_001"].value == row["sell_signals"]
        assert meta["hold/STG_MOMENTUM_001"].value == row["hold_signals"]
        assert meta["seconds/STG_MOMENTUM_001"].value == pytest.approx(row["duration_ms"] / 1000, abs=1e-4)
        assert isinstance(meta["buy/STG_MOMENTUM_001"], dg.IntMetadataValue)
        assert sum(1 for name in meta if name.startswith("buy/STG_")) == 10
    # The days' own figures add up to the run's total, which every partition of the range carries.
    per_day_buys = sum(m[name].value for m in by_day.values() for name in m if name.startswith("buy/STG_"))
    assert per_day_buys == by_day["2024-03-05"]["buy_signals"].value > 0

    stats = dg.materialize(
        [strategy_stats], resources=_resources(), instance=market, tags=_range("2024-03-13", "2024-03-15")
    )
    by_day = {m.partition: m.metadata for m in stats.asset_materializations_for_node("strategy_stats")}
    stored = _warehouse().read_table("strategy_stats").filter(pl.col("period_days") == 30)
    for day, meta in by_day.items():
        rows = stored.filter(pl.col("as_of_date") == dt.date.fromisoformat(day))
        assert {n for n in meta if n.startswith("signals_30d/")} == {f"signals_30d/{s}" for s in rows["strategy_id"]}
        for row in rows.iter_rows(named=True):
            assert meta[f"signals_30d/{row['strategy_id']}"].value == row["signal_count"]
            if row["hit_rate"] is None:
                assert f"hit_rate_30d/{row['strategy_id']}" not in meta
            else:
                assert meta[f"hit_rate_30d/{row['strategy_id']}"].value == pytest.approx(row["hit_rate"])
    assert "hit_rate_30d/STG_MEAN_REVERSION_001" in by_day["2024-03-15"]  # horizon 5: judged by the 15th
    # The charts of the trailing window sit on the last day only.
    assert "hit_rate_chart" not in by_day["2024-03-13"] and "basket_return_chart" not in by_day["2024-03-14"]
    for name in ("hit_rate_chart", "basket_return_chart"):
        entry = by_day["2024-03-15"][name]
        assert isinstance(entry, dg.MarkdownMetadataValue)
        prefix = "data:image/png;base64,"
        data_uri = entry.value[entry.value.index(prefix) + len(prefix) : -1]
        assert png_image(base64.b64decode(data_uri)).size == WIDE_PIXELS
