"""The raw market assets through Dagster: single-run ranges, closed days, metadata, bad input."""

import datetime as dt
import os
import subprocess
import sys

import dagster as dg
import polars as pl
import pytest

import qrl_platform
from qrl_platform.definitions import RESOURCES
from qrl_platform.defs.market.assets import (
    MARKET_ASSETS,
    daily_quotes,
    institutional_flows,
    margin_balances,
    valuations,
)
from qrl_platform.defs.resources import MarketSourceResource
from qrl_platform.market.demo import DEMO_LABEL
from qrl_platform.market.schema import BadMarketData
from qrl_platform.market.sources import DayResult

DAILY = [daily_quotes, institutional_flows, margin_balances, valuations]


def _range_tags(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def _materialization(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetMaterialization:
    events = result.asset_materializations_for_node(asset)
    assert events, f"no materialization for {asset}"
    return events[0]


def test_a_week_with_a_typhoon_day_materialises_in_one_run(qrl_home):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(DAILY, resources=RESOURCES, instance=instance, tags=_range_tags("2024-10-28", "2024-11-01"))
    assert result.success
    meta = _materialization(result, "daily_quotes").metadata
    assert meta["open_days"].value == 4 and meta["closed_days"].value == 1
    assert "2024-10-31: Typhoon Kong-rey" in meta["closed_dates"].value
    assert meta["data"].value == DEMO_LABEL
    assert set(meta["stocks_per_market"].value) == {"TWSE", "TPEx"}
    assert (
        meta["dagster/row_count"].value
        == qrl_platform.load("daily_quotes", start="2024-10-28", end="2024-11-01").height
    )
    # The closed day is stored as an empty, typed frame: readers see it as "materialised, no rows".
    closed = qrl_platform.load("daily_quotes", "2024-10-31")
    assert closed.height == 0 and closed.schema["close"] == pl.Float64
    assert len(instance.get_runs()) == 1


def test_single_closed_partition_reports_market_closed(qrl_home):
    result = dg.materialize([daily_quotes], resources=RESOURCES, partition_key="2024-02-08")
    meta = _materialization(result, "daily_quotes").metadata
    assert meta["market_closed"].value is True
    assert "XTAI" in meta["closed_reason"].value
    assert meta["dagster/row_count"].value == 0


def test_rematerialising_a_partition_leaves_the_same_rows(qrl_home):
    dg.materialize([valuations], resources=RESOURCES, partition_key="2024-03-05")
    first = qrl_platform.load("valuations", "2024-03-05")
    dg.materialize([valuations], resources=RESOURCES, partition_key="2024-03-05")
    assert qrl_platform.load("valuations", "2024-03-05").equals(first)


class _BrokenSource:
    """A source that returns a negative price for one date, as a corrupted payload would."""

    name = "broken"

    def __init__(self, inner):
        self.inner = inner

    def fetch_day(self, table, date):
        good = self.inner.fetch_day(table, date)
        frame = good.frame.with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(-5.0).otherwise(pl.col("close")).alias("close")
        )
        from qrl_platform.market.schema import conform

        return DayResult(table, date, conform(table, frame, context=str(date)))

    def has_data(self, date):
        return True


def test_bad_input_fails_naming_field_and_date_and_keeps_stored_partitions(qrl_home, monkeypatch):
    dg.materialize([daily_quotes], resources=RESOURCES, partition_key="2024-03-05")
    before = qrl_platform.load("daily_quotes", "2024-03-05")
    real_get = MarketSourceResource.get
    monkeypatch.setattr(MarketSourceResource, "get", lambda self: _BrokenSource(real_get(self)))
    with pytest.raises(
        BadMarketData, match=r"daily_quotes 2024-03-05: field 'close' is negative \(-5.0\) for stock \w+ on 2024-03-05"
    ):
        dg.materialize([daily_quotes], resources=RESOURCES, partition_key="2024-03-05")
    assert qrl_platform.load("daily_quotes", "2024-03-05").equals(before)


def test_slow_cadence_tables_carry_published_on(qrl_home):
    monthly, quarterly, weekly = MARKET_ASSETS[5:]  # after the four daily tables and corporate_actions
    assert dg.materialize([monthly], resources=RESOURCES, partition_key="2024-02-01").success
    assert dg.materialize([quarterly], resources=RESOURCES, partition_key="2024-04-01").success
    assert dg.materialize([weekly], resources=RESOURCES, partition_key="2024-03-08").success
    revenue = qrl_platform.load("monthly_revenue", "2024-02-01")
    assert revenue["published_on"].min() >= dt.date(2024, 3, 1)
    assert qrl_platform.load("financials", "2024-04-01")["fiscal_quarter"].unique().to_list() == ["2024Q2"]
    assert set(qrl_platform.load("shareholding_distribution", "2024-03-08")["level"].unique()) == set(range(1, 16)) | {
        17
    }


def test_cli_partition_range_is_one_run(qrl_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    command = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "qrl_platform.definitions",
        "--select",
        "daily_quotes,institutional_flows,margin_balances,valuations",
        "--partition-range",
        "2024-12-23...2024-12-31",
    ]
    completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].is_success
    assert (
        len(qrl_platform.load("margin_balances", start="2024-12-23", end="2024-12-31")["trade_date"].unique()) == 7
    )  # Dec 25 is a trading day in Taiwan
