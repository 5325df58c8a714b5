"""The technical, fundamental and chip indicator assets through Dagster: one run for raw + indicators
over a range, closed days, blocking checks, what a one-day run reads, and factor_metadata on SQLite and PostgreSQL."""

import base64
import dataclasses
import datetime as dt
import os
import shutil

import dagster as dg
import polars as pl
import pytest

import qrl_platform
from qrl_platform.calendar import previous_trading_days
from qrl_platform.definitions import RESOURCES
from qrl_platform.defs.factors.assets import (
    INDICATOR_ASSETS,
    chip_indicators,
    factor_metadata,
    fundamental_indicators,
    technical_indicators,
)
from qrl_platform.defs.factors.checks import INDICATOR_CHECKS
from qrl_platform.defs.factors.jobs import refresh_factor_metadata_job
from qrl_platform.defs.factors.schedules import INDICATOR_SCHEDULES
from qrl_platform.defs.gating import (
    blocking_check_status,
    blocking_check_statuses,
    blocking_check_statuses_of_assets,
    check_names_of,
)
from qrl_platform.defs.market.assets import daily_quotes, institutional_flows, margin_balances, valuations
from qrl_platform.defs.partitions import trading_day
from qrl_platform.defs.resources import WarehouseResource
from qrl_platform.factors import chip, fundamental, quality, registry
from qrl_platform.factors.compute_range import MissingUpstream
from qrl_platform.factors.families import TECHNICAL_SLACK_DAYS
from qrl_platform.market.demo import demo_market
from qrl_platform.market.ingest import ingest_days, store_frame
from qrl_platform.settings import settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import Warehouse, schema
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.stored_frames import report_home

DAILY_RAW = [daily_quotes, institutional_flows, margin_balances, valuations]
INDICATORS = [technical_indicators, fundamental_indicators, chip_indicators]
NAMES = [a.key.path[-1] for a in INDICATORS]
RANGE = ("2024-10-28", "2024-11-08")  # includes the 2024-10-31 typhoon closure XTAI misses
HISTORY_END = dt.date(2024, 10, 25)  # raw history before the range is prepared outside Dagster
CLOSED = "2024-10-31"


def _range_tags(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


@pytest.fixture(scope="module")
def raw_history(tmp_path_factory):
    """A year and a bit of demo raw frames before the range (what earlier daily runs would have stored),
    built once per module with the same ingest functions the raw assets use."""
    root = tmp_path_factory.mktemp("raw_history")
    store = FrameStore(str(root))
    market = demo_market(
        int(os.environ.get("QRL_DEMO_SEED", "7")), int(os.environ.get("QRL_TEST_DEMO_UNIVERSE", "120"))
    )
    days = previous_trading_days(HISTORY_END, 290)
    for table in ("daily_quotes", "institutional_flows", "margin_balances", "valuations"):
        ingest_days(market, store, table, days)
    month = dt.date(2022, 6, 1)
    while month <= dt.date(2024, 10, 1):
        store_frame(store, "monthly_revenue", month.isoformat(), market.monthly_revenue(month))
        if month.month in (1, 4, 7, 10) and month <= dt.date(2024, 7, 1):
            store_frame(store, "financials", month.isoformat(), market.financials(month))
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    week = dt.date(2024, 8, 30)
    while week <= dt.date(2024, 11, 8):
        store_frame(store, "shareholding_distribution", week.isoformat(), market.shareholding_distribution(week))
        week += dt.timedelta(days=7)
    return root


@pytest.fixture
def indicator_home(qrl_home, raw_history):
    shutil.copytree(raw_history / "frames", qrl_home / "frames")
    return qrl_home


@pytest.fixture
def instance(indicator_home):
    """An instance in which the copied raw history counts as stored (materialised)."""
    ephemeral = dg.DagsterInstance.ephemeral()
    report_home(ephemeral, indicator_home)
    return ephemeral


@pytest.fixture
def reads(monkeypatch):
    """Every partition file FrameStore reads, as (asset, key) in order."""
    seen: list[tuple[str, str]] = []
    original = FrameStore._read_paths

    def recording(self, asset, partitions, columns):
        seen.extend((asset, key) for key in partitions)
        return original(self, asset, partitions, columns)

    monkeypatch.setattr(FrameStore, "_read_paths", recording)
    return seen


def _keys(reads: list[tuple[str, str]], asset: str) -> list[str]:
    return [key for name, key in reads if name == asset]


def test_raw_and_indicators_for_a_range_materialise_in_one_run(indicator_home, instance, monkeypatch):
    result = dg.materialize(
        [*DAILY_RAW, *INDICATORS, *INDICATOR_CHECKS], resources=RESOURCES, instance=instance, tags=_range_tags(*RANGE)
    )
    assert result.success
    assert len(instance.get_runs()) == 1

    open_days = [
        d
        for d in pl.date_range(dt.date(2024, 10, 28), dt.date(2024, 11, 8), eager=True).to_list()
        if d.weekday() < 5 and d.isoformat() != CLOSED
    ]
    for name in NAMES:
        ids = registry.factor_ids(name)
        for day in open_days:
            frame = qrl_platform.load(name, day.isoformat())
            quotes = qrl_platform.load("daily_quotes", day.isoformat())
            assert frame.columns == ["stock_id", "trade_date", *ids]
            assert all(frame.schema[c] == pl.Float64 for c in ids)
            assert frame["stock_id"].to_list() == sorted(quotes["stock_id"].to_list())  # one row per listed stock
            assert frame["trade_date"].unique().to_list() == [day]
        closed = qrl_platform.load(name, CLOSED)
        assert closed.height == 0 and closed.columns == ["stock_id", "trade_date", *ids]

        events = {m.partition: m.metadata for m in result.asset_materializations_for_node(name)}
        assert len(events) == 10
        assert events[CLOSED]["market_closed"].value is True
        assert "Typhoon" in events[CLOSED]["closed_reason"].value
        day = events["2024-11-05"]
        assert day["market_closed"].value is False
        assert day["dagster/row_count"].value == qrl_platform.load(name, "2024-11-05").height
        assert list(day["missing_rates"].value) == ids
        assert day["days"].value == 10 and day["closed_days"].value == 1
        assert day["compute_seconds"].value >= 0
        assert {r.data["factor"] for r in day["factor_missing_rates"].value.records} == set(ids)
        if name == "chip_indicators":  # margin factors for 11-05 come from 11-04's margin
            margin_factors = ["margin_utilization", "short_margin_ratio", "margin_change_5", "margin_change_20"]
            assert day["factor_lag_days"].value == dict.fromkeys(margin_factors, 1)
            assert day["lagged_source_days"].value == {"margin_balances": "2024-11-04"}
        else:
            assert "factor_lag_days" not in day

    # Every day passes, so each of the four blocking checks of the three assets is recorded once for the
    # whole range (no partition), naming the days it judged.
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 4 * 3
    failed = [
        (e.asset_key.to_user_string(), e.check_name, e.partition, e.description) for e in evaluations if not e.passed
    ]
    assert not failed
    assert all(e.blocking for e in evaluations)
    assert {(e.asset_key.path[-1], e.check_name, e.partition) for e in evaluations} == {
        (name, check, None)
        for name in NAMES
        for check in ("missing_rate", "coverage", "no_infinities", "within_ranges")
    }
    assert all(e.metadata["days_checked"].value == 9 and e.metadata["closed_days"].value == 1 for e in evaluations)
    assert all((e.metadata["first_day"].value, e.metadata["last_day"].value) == RANGE for e in evaluations)
    coverage = next(e for e in evaluations if e.check_name == "coverage")
    assert coverage.metadata["lowest_coverage"].value == 1.0
    missing = next(
        e for e in evaluations if e.check_name == "missing_rate" and e.asset_key.path[-1] == "chip_indicators"
    )
    assert set(missing.metadata["worst_missing_rates"].value) == set(registry.factor_ids("chip_indicators"))
    # The daily flow's gate counts the range evaluations for every day of the one range run.
    names = check_names_of(INDICATOR_CHECKS, "chip_indicators")
    assert names == ["missing_rate", "coverage", "no_infinities", "within_ranges"]
    for day in [*open_days, dt.date.fromisoformat(CLOSED)]:
        status = blocking_check_status(instance, "chip_indicators", day.isoformat(), names)
        assert status.materialized and status.failures == [] and status.unchecked == []
        assert status.run_id == result.run_id
    # strategy_signals' gate judges the three assets together: the same statuses as asset by asset, from
    # one read of the run's check evaluations.
    days = [d.isoformat() for d in [*open_days, dt.date.fromisoformat(CLOSED)]]
    per_asset = {
        name: blocking_check_statuses(instance, name, days, check_names_of(INDICATOR_CHECKS, name)) for name in NAMES
    }
    reads = []
    read_run = instance.get_records_for_run
    monkeypatch.setattr(
        instance, "get_records_for_run", lambda run_id, **kw: reads.append(run_id) or read_run(run_id, **kw)
    )
    together = blocking_check_statuses_of_assets(
        instance, {n: check_names_of(INDICATOR_CHECKS, n) for n in NAMES}, days
    )
    assert together == per_asset
    assert reads == [result.run_id]


def test_single_day_run_reads_only_its_lookback_window(indicator_home, instance, reads):
    day = HISTORY_END
    stored_days = len(FrameStore(settings().qrl_home).partitions("daily_quotes"))

    dg.materialize([technical_indicators], resources=RESOURCES, instance=instance, partition_key=day.isoformat())
    window = [
        d.isoformat() for d in previous_trading_days(day, registry.module_lookback("M07") + 1 + TECHNICAL_SLACK_DAYS)
    ]
    assert _keys(reads, "daily_quotes") == window
    assert len(window) == 250 < stored_days
    assert {asset for asset, _ in reads} == {"daily_quotes"}

    reads.clear()
    dg.materialize([fundamental_indicators], resources=RESOURCES, instance=instance, partition_key=day.isoformat())
    assert _keys(reads, "daily_quotes") == [day.isoformat()]
    assert _keys(reads, "valuations") == [day.isoformat()]
    windows = fundamental.history_window(day, day)
    for table in ("monthly_revenue", "financials"):
        first, last = (d.isoformat() for d in windows[table])
        stored = FrameStore(settings().qrl_home).partitions(table)
        assert _keys(reads, table) == [k for k in stored if first <= k <= last]
        assert len(_keys(reads, table)) < len(stored)  # older periods could only ever give null
    assert _keys(reads, "monthly_revenue")[0] == "2023-05-01"  # 17 months before October 2024
    assert _keys(reads, "financials")[0] == "2023-01-01"  # 7 quarters before 2024Q4

    reads.clear()
    dg.materialize([chip_indicators], resources=RESOURCES, instance=instance, partition_key=day.isoformat())
    window = [d.isoformat() for d in previous_trading_days(day, chip.LOOKBACK + 1)]
    for table in ("daily_quotes", "institutional_flows"):
        assert _keys(reads, table) == window
    assert _keys(reads, "margin_balances") == window[:-1]  # the day's own margin (out ~21:00) is never read
    first, last = (d.isoformat() for d in chip.history_window(day, day)["shareholding_distribution"])
    stored = FrameStore(settings().qrl_home).partitions("shareholding_distribution")
    assert _keys(reads, "shareholding_distribution") == [k for k in stored if first <= k <= last]


def test_a_one_day_run_gives_the_same_values_as_the_range_run(indicator_home, instance):
    dg.materialize([*DAILY_RAW, *INDICATORS], resources=RESOURCES, instance=instance, tags=_range_tags(*RANGE))
    day = "2024-11-05"
    from_range = {name: qrl_platform.load(name, day) for name in NAMES}
    dg.materialize(INDICATORS, resources=RESOURCES, instance=instance, partition_key=day)
    for name in ("fundamental_indicators", "chip_indicators"):
        assert qrl_platform.load(name, day).equals(from_range[name]), name
    # Technical: recursive indicators (EMA, Wilder RSI/ATR, MACD, KD) forget their seed after ~250 bars, to a
    # few 1e-6 TWD on prices in the hundreds (MACD near zero shows it as a larger relative error).
    # OBV is stored over a trailing window (compute_range.trailing_obv), so it must match exactly.
    single = qrl_platform.load("technical_indicators", day)
    assert single["obv"].equals(from_range["technical_indicators"]["obv"])
    for factor in registry.factor_ids("M07"):
        a, b = single[factor], from_range["technical_indicators"][factor]
        assert a.is_null().to_list() == b.is_null().to_list(), factor
        assert a.drop_nulls().to_list() == pytest.approx(b.drop_nulls().to_list(), rel=1e-6, abs=1e-5), factor


def test_failed_blocking_check_names_factor_and_stocks_and_stops_downstream(indicator_home, instance, monkeypatch):
    real = registry.factors

    def strict(module=None):  # pretend margin utilisation may not exceed 1 %
        return tuple(
            dataclasses.replace(f, max_value=1.0) if f.factor_id == "margin_utilization" else f for f in real(module)
        )

    monkeypatch.setattr(registry, "factors", strict)

    @dg.asset(partitions_def=trading_day, deps=["chip_indicators"], backfill_policy=dg.BackfillPolicy.single_run())
    def strategy_probe() -> None:
        """Stands in for strategy_signals, which must not run on a day whose chip factors failed."""

    chip_checks = [c for c in INDICATOR_CHECKS if "chip_indicators" in {k.asset_key.path[-1] for k in c.check_keys}]
    result = dg.materialize(
        [chip_indicators, *chip_checks, strategy_probe],
        resources=RESOURCES,
        instance=instance,
        partition_key=HISTORY_END.isoformat(),
        raise_on_error=False,
    )
    assert not result.success
    assert result.asset_materializations_for_node("chip_indicators")
    assert not result.asset_materializations_for_node("strategy_probe")
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    failed = evaluations["within_ranges"]
    assert not failed.passed and failed.blocking and failed.partition == HISTORY_END.isoformat()
    assert failed.metadata["failing_factors"].value == "margin_utilization"
    worst = failed.metadata["worst_stocks"].value.split(", ")
    assert len(worst) == 10 and all(worst)
    assert "margin_utilization values outside [0, 1]" in failed.description and worst[0] in failed.description
    assert evaluations["missing_rate"].passed and evaluations["coverage"].passed


def test_a_range_run_fails_only_the_bad_day(indicator_home, instance, monkeypatch):
    """One bad partition in a backfill: that day's check fails, naming factor and stocks; the others pass."""
    bad_day = dt.date(2024, 10, 23)
    real = quality.evaluate

    def with_a_broken_day(frame, quotes, factors, **kwargs):
        if frame.width:  # what the check reads back: break one factor of one stock on one day
            hit = (pl.col("stock_id") == frame["stock_id"][0]) & (pl.col("trade_date") == bad_day)
            frame = frame.with_columns(pl.when(hit).then(float("inf")).otherwise(pl.col("pb")).alias("pb"))
        return real(frame, quotes, factors, **kwargs)

    monkeypatch.setattr(quality, "evaluate", with_a_broken_day)
    checks = [c for c in INDICATOR_CHECKS if "fundamental_indicators" in {k.asset_key.path[-1] for k in c.check_keys}]
    result = dg.materialize(
        [fundamental_indicators, *checks],
        resources=RESOURCES,
        instance=instance,
        tags=_range_tags("2024-10-21", HISTORY_END.isoformat()),
        raise_on_error=False,
    )
    assert not result.success
    failed = [(e.check_name, e.partition) for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == [("no_infinities", bad_day.isoformat())]
    # One failing day: every day of the range gets its own four evaluations again; only the checks that
    # passed on every day also give the run's result (no partition), the failed one gives none.
    days = trading_day.get_partition_keys_in_range(dg.PartitionKeyRange("2024-10-21", HISTORY_END.isoformat()))
    judged = {(e.check_name, e.partition) for e in result.get_asset_check_evaluations()}
    assert judged == {(c, d) for c in ("missing_rate", "coverage", "no_infinities", "within_ranges") for d in days} | {
        (c, None) for c in ("missing_rate", "coverage", "within_ranges")
    }
    # The daily flow's gate still refuses exactly the bad day.
    names = check_names_of(INDICATOR_CHECKS, "fundamental_indicators")
    statuses = blocking_check_statuses(instance, "fundamental_indicators", days, names)
    assert [day for day, status in statuses.items() if status.failures] == [bad_day.isoformat()]
    [evaluation] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert evaluation.metadata["failing_factors"].value == "pb"
    assert (
        "non_finite: pb 1 non-finite value(s)" in evaluation.description
        and "inf on 2024-10-23" in evaluation.description
    )


def test_checks_run_on_their_own_judge_the_run_partitions_or_the_latest_day(indicator_home, instance):
    dg.materialize(
        [fundamental_indicators], resources=RESOURCES, instance=instance, tags=_range_tags("2024-10-23", "2024-10-25")
    )
    checks = [c for c in INDICATOR_CHECKS if "fundamental_indicators" in {k.asset_key.path[-1] for k in c.check_keys}]
    only_checks = dg.AssetSelection.checks(*checks)
    ranged = dg.materialize(
        [fundamental_indicators, *checks],
        selection=only_checks,
        resources=RESOURCES,
        instance=instance,
        tags=_range_tags("2024-10-23", "2024-10-25"),
    )
    assert not ranged.asset_materializations_for_node("fundamental_indicators")
    judged = ranged.get_asset_check_evaluations()
    assert {e.partition for e in judged} == {None} and len(judged) == 4  # one per check for the run's three days
    assert {(e.metadata["first_day"].value, e.metadata["last_day"].value) for e in judged} == {
        ("2024-10-23", "2024-10-25")
    }
    latest = dg.materialize(
        [fundamental_indicators, *checks], selection=only_checks, resources=RESOURCES, instance=instance
    )
    evaluations = latest.get_asset_check_evaluations()
    # The day's evaluations, and the run's result of each check (no partition), all passed.
    assert {e.partition for e in evaluations} == {"2024-10-25", None} and all(e.passed for e in evaluations)


def test_a_closed_day_on_its_own_materialises_empty_with_market_closed(indicator_home, instance, reads):
    result = dg.materialize(
        INDICATORS, resources=RESOURCES, instance=instance, partition_key="2024-02-08"
    )  # Lunar New Year
    for name in NAMES:
        [event] = result.asset_materializations_for_node(name)
        assert event.metadata["market_closed"].value is True
        assert "XTAI" in event.metadata["closed_reason"].value
        assert event.metadata["dagster/row_count"].value == 0
        stored = qrl_platform.load(name, "2024-02-08")
        assert stored.height == 0 and stored.columns == ["stock_id", "trade_date", *registry.factor_ids(name)]
    assert reads == []  # a closed day reads no raw history at all


def test_missing_upstream_partition_fails_naming_table_and_date(indicator_home, instance):
    # A Failure the step retry policy does not retry: only materialising the upstream day helps.
    with pytest.raises(
        dg.Failure, match=r"technical_indicators: upstream daily_quotes partition\(s\) 2024-11-12 not materialised"
    ) as failure:
        dg.materialize([technical_indicators], resources=RESOURCES, instance=instance, partition_key="2024-11-12")
    assert failure.value.allow_retries is False and isinstance(failure.value.__cause__, MissingUpstream)


def test_factor_metadata_rows_equal_the_registry(warehouse_url, qrl_home):
    warehouse = Warehouse(warehouse_url)
    stale = {**registry.ALL_FACTORS[0].as_row(), "factor_id": "retired_factor", "updated_at": dt.datetime.now(dt.UTC)}
    with warehouse.begin() as connection:
        connection.execute(schema.factor_metadata.insert(), [stale])

    defs = dg.Definitions(
        assets=INDICATOR_ASSETS,
        jobs=[refresh_factor_metadata_job],
        schedules=INDICATOR_SCHEDULES,
        resources={**RESOURCES, "warehouse": WarehouseResource(url=warehouse_url)},
    )
    result = defs.resolve_job_def("refresh_factor_metadata_job").execute_in_process()
    assert result.success
    [event] = result.asset_materializations_for_node("factor_metadata")
    assert event.metadata["dagster/row_count"].value == len(registry.ALL_FACTORS)

    stored = warehouse.read_table("factor_metadata").drop("updated_at").sort("factor_id")
    expected = pl.DataFrame([f.as_row() for f in registry.ALL_FACTORS]).sort("factor_id")
    assert stored["factor_id"].to_list() == expected["factor_id"].to_list()  # the retired row is gone
    assert stored.select(expected.columns).to_dicts() == expected.to_dicts()
    assert set(stored["module"].unique()) == {"M07", "M08", "M09"}
    # Twice is the same as once.
    dg.materialize([factor_metadata], resources={"warehouse": WarehouseResource(url=warehouse_url)})
    assert warehouse.read_table("factor_metadata").height == len(registry.ALL_FACTORS)
    warehouse.dispose()


def test_definitions_wire_groups_deps_job_and_schedule():
    defs = dg.Definitions(
        assets=[*DAILY_RAW, *INDICATORS, factor_metadata],
        asset_checks=INDICATOR_CHECKS,
        jobs=[refresh_factor_metadata_job],
        schedules=INDICATOR_SCHEDULES,
        resources=RESOURCES,
    )
    graph = defs.resolve_asset_graph()
    for asset, group, module in zip(
        INDICATORS, ("technical", "fundamental", "chip"), ("M07", "M08", "M09"), strict=True
    ):
        spec = next(iter(asset.specs))
        assert spec.group_name == group and module in spec.description
        assert asset.backfill_policy == dg.BackfillPolicy.single_run()
        assert asset.partitions_def == trading_day
    parents = {name: {k.path[-1] for k in graph.get(dg.AssetKey(name)).parent_keys} for name in NAMES}
    assert parents == {
        "technical_indicators": {"daily_quotes", "corporate_actions"},  # the adjusted bars' events
        "fundamental_indicators": {"daily_quotes", "valuations", "monthly_revenue", "financials"},
        "chip_indicators": {"daily_quotes", "institutional_flows", "margin_balances", "shareholding_distribution"},
    }
    mapping = fundamental_indicators.get_partition_mapping(dg.AssetKey("monthly_revenue"))
    assert isinstance(mapping, dg.TimeWindowPartitionMapping) and mapping.start_offset < 0
    assert {k.name for c in INDICATOR_CHECKS for k in c.check_keys} == {
        "missing_rate",
        "coverage",
        "no_infinities",
        "within_ranges",
    }
    assert all(spec.blocking for c in INDICATOR_CHECKS for spec in c.check_specs)
    [schedule] = INDICATOR_SCHEDULES
    assert schedule.name == "refresh_factor_metadata_schedule"
    assert schedule.cron_schedule == "0 7 * * 1" and schedule.execution_timezone == "Asia/Taipei"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("refresh_factor_metadata_job")
    assert job.asset_layer.executable_asset_keys == {dg.AssetKey("factor_metadata")}


def test_registry_is_one_list_with_unique_ids():
    ids = registry.factor_ids()
    assert len(ids) == len(set(ids)) == len(registry.ALL_FACTORS)
    assert registry.factor_ids("M08") == list(fundamental.FACTOR_COLUMNS)
    assert registry.factor_ids("chip") == list(chip.FACTOR_COLUMNS)
    assert registry.factor_ids("technical_indicators") == registry.factor_ids("M07")
    with pytest.raises(KeyError, match="unknown indicator module"):
        registry.factor_ids("M99")


def test_stored_obv_is_talib_obv_over_the_trailing_window():
    import numpy as np
    import polars as pl
    import talib

    from qrl_platform.factors.compute_range import OBV_WINDOW, trailing_obv

    rng = np.random.default_rng(3)
    n = OBV_WINDOW + 40
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    volume = rng.integers(1_000, 50_000, n).astype(float)
    quotes = pl.DataFrame(
        {
            "stock_id": ["2330"] * n,
            "trade_date": pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 1, 1) + pl.duration(days=n - 1), eager=True),
            "close": close,
            "volume": volume.astype(np.int64),
        }
    )
    factors = quotes.select("stock_id", "trade_date").with_columns(pl.lit(None, dtype=pl.Float64).alias("obv"))
    stored = trailing_obv(quotes, factors)["obv"].to_numpy()
    assert np.isnan(stored[: OBV_WINDOW - 1]).all()  # warm-up: fewer than OBV_WINDOW bars
    for t in (OBV_WINDOW - 1, OBV_WINDOW + 5, n - 1):  # TA-Lib OBV over the last OBV_WINDOW bars
        window = slice(t - OBV_WINDOW + 1, t + 1)
        assert stored[t] == pytest.approx(talib.OBV(close[window], volume[window])[-1])


@pytest.mark.parametrize("source", ["demo", "live", "live without MOPS"])
def test_factors_on_tables_the_source_cannot_provide_are_reported_not_judged(
    indicator_home, instance, source, monkeypatch
):
    """Without revenue and financials stored, their factors are empty. The demo and live sources both
    provide those tables (live through MOPS), so that is a failed missing_rate check; a source that does
    not provide them (here: live with MOPS taken out) has them left out of the judgement and named, and
    the checks pass — so strategies are not blocked by tables the source can never deliver."""
    from qrl_platform.market.live import LiveMarketSource

    if source == "live without MOPS":
        monkeypatch.setattr(LiveMarketSource, "provides", LiveMarketSource.provides - {"monthly_revenue", "financials"})
    for table in ("monthly_revenue", "financials"):
        shutil.rmtree(indicator_home / "frames" / table)
    fundamental_checks = [
        c for c in INDICATOR_CHECKS if "fundamental_indicators" in {k.asset_key.path[-1] for k in c.check_keys}
    ]
    resources = {**RESOURCES, "market_source": configured_resources(market_source=source.split()[0])["market_source"]}
    result = dg.materialize(
        [fundamental_indicators, *fundamental_checks],
        resources=resources,
        instance=instance,
        partition_key=HISTORY_END.isoformat(),
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    missing = evaluations["missing_rate"]
    statement_factors = {"eps_ttm", "roe_ttm", "eps_yoy", "revenue_yoy", "revenue_mom", "revenue_3m_yoy"}
    if source in ("demo", "live"):
        assert not result.success and not missing.passed
        assert statement_factors <= set(missing.metadata["failing_factors"].value.split(", "))
        assert "factors_not_provided_by_source" not in missing.metadata
    else:
        assert result.success and all(e.passed for e in evaluations.values())
        left_out = set(missing.metadata["factors_not_provided_by_source"].value.split(", "))
        assert left_out == statement_factors
        assert "Not judged" in missing.description and "pe" not in left_out


def test_missing_rate_heatmap_on_the_last_day_uses_rates_earlier_runs_recorded(indicator_home, instance, monkeypatch):
    from qrl_platform import dashboard
    from qrl_platform_tests.test_charts import png_image

    result = dg.materialize(
        [*DAILY_RAW, technical_indicators], resources=RESOURCES, instance=instance, tags=_range_tags(*RANGE)
    )
    events = {m.partition: m.metadata for m in result.asset_materializations_for_node("technical_indicators")}
    assert [day for day, meta in events.items() if "missing_rate_heatmap" in meta] == ["2024-11-08"]
    heatmap = events["2024-11-08"]["missing_rate_heatmap"]
    assert isinstance(heatmap, dg.MarkdownMetadataValue)
    png = base64.b64decode(heatmap.value.split("base64,", 1)[1][:-1])
    rows = len(registry.factor_ids("M07"))
    assert png_image(png).size == (640, 96 + 10 * rows)

    seen = {}
    real = dashboard.indicator_charts

    def spy(asset, factor_ids, last_day, known, stored):
        seen.update(last_day=last_day, known_days=set(known["trade_date"].to_list()), stored=dict(stored))
        return real(asset, factor_ids, last_day, known, stored)

    monkeypatch.setattr(dashboard, "indicator_charts", spy)
    again = dg.materialize([technical_indicators], resources=RESOURCES, instance=instance, partition_key="2024-11-08")
    assert "missing_rate_heatmap" in again.asset_materializations_for_node("technical_indicators")[0].metadata
    open_days = [d for d in events if d != CLOSED]
    assert seen["last_day"] == dt.date(2024, 11, 8) and seen["known_days"] == {dt.date(2024, 11, 8)}
    # Every open day of the first run, as recorded in its metadata; the closed day recorded none.
    assert sorted(seen["stored"]) == sorted(open_days)
    assert seen["stored"]["2024-11-05"] == events["2024-11-05"]["missing_rates"].value
