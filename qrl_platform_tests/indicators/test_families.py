"""The indicator families' declarations say what their maths really read, and everything is built from them.

The declared inputs are checked against the maths itself: each family is computed over a demo-market store
holding every raw table, and the tables its reader touched must be exactly the declared ones (required
daily tables, daily tables read when stored, slower tables) — so a family that starts reading a new table
without declaring it (and so without lineage, sensor inputs or backfill planning) fails here."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from qrl_platform.calendar import previous_trading_days
from qrl_platform.defs.job_tags import INDICATORS
from qrl_platform.defs.market.jobs import INDICATOR_JOBS
from qrl_platform.defs.market.sensors import indicator_inputs
from qrl_platform.factors import compute_range as ranges
from qrl_platform.factors import families, registry
from qrl_platform.market.corporate_actions import by_partition
from qrl_platform.market.demo import DemoMarket
from qrl_platform.storage.frames import FrameStore

DAY = dt.date(2024, 11, 1)


@pytest.fixture(scope="module")
def demo_store(tmp_path_factory) -> FrameStore:
    """Every raw table of the demo market (60 stocks) over the longest family's lookback before DAY."""
    store = FrameStore(str(tmp_path_factory.mktemp("families")))
    market = DemoMarket(seed=7, universe_size=60)
    longest = max(ranges.lookback_trading_days(asset) for asset in families.ASSETS)
    days = previous_trading_days(DAY, longest + 1)
    for table in ("daily_quotes", "institutional_flows", "margin_balances", "valuations"):
        for day in days:
            store.write(table, day.isoformat(), market.fetch_day(table, day).frame)
    for day, frame in by_partition(market.corporate_actions(days[0], DAY), days).items():
        store.write("corporate_actions", day.isoformat(), frame)
    for month in (dt.date(2023, m, 1) for m in range(1, 13)):
        store.write("monthly_revenue", month.isoformat(), market.monthly_revenue(month))
    for month in (dt.date(2024, m, 1) for m in range(1, 11)):
        store.write("monthly_revenue", month.isoformat(), market.monthly_revenue(month))
    for quarter in [dt.date(y, m, 1) for y in (2022, 2023, 2024) for m in (1, 4, 7, 10)]:
        if quarter < DAY:
            store.write("financials", quarter.isoformat(), market.financials(quarter))
    friday = DAY
    for _ in range(10):
        store.write("shareholding_distribution", friday.isoformat(), market.shareholding_distribution(friday))
        friday -= dt.timedelta(days=7)
    return store


@pytest.mark.parametrize("family", families.FAMILIES, ids=lambda f: f.asset)
def test_a_family_reads_exactly_the_tables_it_declares(demo_store, family):
    result = ranges.compute_range(demo_store, family.asset, [DAY])

    declared = {*ranges.DAILY_INPUTS[family.asset], *family.reads_when_stored, *family.periodic_windows}
    assert set(result.history) == declared
    assert result.rows == 60 and result.factor_ids == [f.factor_id for f in family.factors]


def test_the_daily_inputs_and_a_days_inputs_come_from_the_factors_declarations():
    # every family reads daily_quotes (its universe) plus the daily tables its factors' columns name
    assert ranges.DAILY_INPUTS == {
        "technical_indicators": ("daily_quotes",),
        "fundamental_indicators": ("daily_quotes", "valuations"),
        "chip_indicators": ("daily_quotes", "institutional_flows", "margin_balances"),
    }
    # the margin factors declare lag_days=1: the sensor waits for the previous trading day's margin
    lagged = {f.factor_id for f in registry.factors("chip") if f.lag_days == 1}
    assert lagged and all("margin_balances" in f.source_tables for f in registry.factors("chip") if f.lag_days)
    assert indicator_inputs("chip_indicators", DAY)[-1] == ("margin_balances", dt.date(2024, 10, 30))
    assert ranges.lookback_trading_days("technical_indicators") == registry.module_lookback("M07") + 10


def test_the_assets_checks_and_jobs_are_one_per_declared_family():
    from qrl_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assert INDICATORS == [family.asset for family in families.FAMILIES] == list(INDICATOR_JOBS)
    for family in families.FAMILIES:
        spec = defs.resolve_assets_def(family.asset).get_asset_spec(dg.AssetKey(family.asset))
        assert spec.group_name == family.group and spec.tags["module"] == family.module
        parents = {key.path[-1] for key in graph.get(dg.AssetKey(family.asset)).parent_keys}
        assert parents == {*ranges.DAILY_INPUTS[family.asset], *family.reads_when_stored, *family.periodic_windows}
        checks = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey(family.asset)}
        assert checks, f"{family.asset} has no quality checks"
        job = defs.resolve_job_def(f"{family.asset}_job")  # raises when the family has no job
        assert dg.AssetKey(family.asset) in job.asset_layer.asset_graph.executable_asset_keys
