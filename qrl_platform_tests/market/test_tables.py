"""The raw-table declarations (market/tables.py) are consistent, and what is derived from them follows them."""

from pathlib import Path

import polars as pl
import pytest

from qrl_platform.cli_status import RAW_TABLES as STATUS_TABLES
from qrl_platform.defs.job_tags import RAW_DAILY
from qrl_platform.defs.market import assets as market_assets
from qrl_platform.defs.market.jobs import RAW_BY_1600, TABLE_JOBS
from qrl_platform.defs.partitions import PARTITIONS, trading_day
from qrl_platform.market import schema, sources, tables, timetable
from qrl_platform.settings import PUBLISH_FIELDS, Settings

CADENCE_OF_PARTITIONS = {
    "trading_day": "daily",
    "revenue_month": "monthly",
    "fiscal_quarter": "quarterly",
    "shareholding_week": "weekly",
}


@pytest.mark.parametrize("table", tables.RAW, ids=lambda table: table.name)
def test_each_declaration_is_consistent(table):
    assert set(table.key) <= set(table.columns), "the key names columns of the table"
    assert set(table.non_negative) <= set(table.columns)
    assert table.columns["stock_id"] == pl.Utf8
    assert CADENCE_OF_PARTITIONS[table.partitions] == table.cadence
    assert table.publish_variable == f"QRL_PUBLISH_{table.name.upper()}"
    assert not table.in_backstop or table.cadence == "daily", "the 16:00 backstop runs trading-day tables only"


def test_schema_sources_and_timetable_cover_every_declared_table_once():
    assert list(schema.RAW_TABLES) == list(tables.NAMES)
    assert schema.KEYS == {table.name: table.key for table in tables.RAW}
    groups = (sources.DAILY_TABLES, sources.PERIODIC_TABLES, sources.EVENT_TABLES)
    assert sorted(name for group in groups for name in group) == sorted(tables.NAMES)
    assert {name: (p.default, p.rule) for name, p in timetable.TIMETABLE.items()} == {
        table.name: (table.publish_at, table.publish_rule) for table in tables.RAW
    }


def test_the_wiring_is_built_from_the_declarations():
    daily = [table.name for table in tables.RAW if table.cadence == "daily"]
    assert RAW_DAILY == daily == list(STATUS_TABLES) == list(TABLE_JOBS)
    assert RAW_BY_1600 == [table.name for table in tables.RAW if table.in_backstop]
    assert "margin_balances" not in RAW_BY_1600  # out ~21:00, never by 16:00
    for table in tables.RAW:
        asset = market_assets.RAW_ASSETS[table.name]
        assert asset.op.pool == table.pool
        assert asset.partitions_def == PARTITIONS[table.partitions]
        assert table.description in (asset.descriptions_by_key[asset.key] or "")
    assert all(market_assets.RAW_ASSETS[name].partitions_def == trading_day for name in daily)


def test_one_publish_setting_per_declared_table_read_from_its_variable(monkeypatch):
    assert PUBLISH_FIELDS == tuple(f"publish_{name}" for name in tables.NAMES)
    for table in tables.RAW:
        assert Settings.variable(f"publish_{table.name}") == table.publish_variable
    monkeypatch.setenv("QRL_PUBLISH_CORPORATE_ACTIONS", "07:45")
    assert Settings().publication_times()["corporate_actions"].strftime("%H:%M") == "07:45"


def test_the_docs_endpoint_table_is_the_one_rendered_from_the_declarations():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "market-sources.md").read_text(encoding="utf-8")
    rendered = tables.endpoints_markdown()
    assert rendered.count("\n") == 1 + len(tables.RAW)
    assert rendered in docs, "docs/market-sources.md's endpoint table differs from endpoints_markdown(); paste it again"
