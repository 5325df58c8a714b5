"""The indicators' lookback is declared to Dagster, and missing history is named with its fix.

* the asset graph maps day D of technical/chip indicators to the weekday window of their daily raw
  tables that holds the trading days compute_range reads (so lineage and "materialize with upstream"
  include the history);
* when that history is not stored, the first line of a failed check says how many partitions of which
  table, which days, and the command that fixes it.
"""

import datetime as dt

import dagster as dg
import pytest

from qrl_platform import cli
from qrl_platform.calendar import previous_trading_days, trading_days
from qrl_platform.defs.partitions import trading_day
from qrl_platform.factors import compute_range as ranges


def _upstream_keys(asset: str, table: str, day: str) -> list[str]:
    from qrl_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    node = graph.get(dg.AssetKey(asset))
    assert dg.AssetKey(table) in node.parent_keys
    # None = Dagster's default between two assets with the same time partitions: identity.
    mapping = defs.resolve_assets_def(asset).get_partition_mapping(dg.AssetKey(table)) or dg.IdentityPartitionMapping()
    result = mapping.get_upstream_mapped_partitions_result_for_partitions(
        trading_day.subset_with_partition_keys([day]), trading_day, graph.get(dg.AssetKey(table)).partitions_def
    )
    return sorted(result.partitions_subset.get_partition_keys())


def _weekdays(start: str, end: str) -> list[str]:
    first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    days = (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    return [d.isoformat() for d in days if d.weekday() < 5]


def test_technical_indicators_of_a_day_depend_on_the_previous_282_weekdays_of_daily_quotes():
    keys = _upstream_keys("technical_indicators", "daily_quotes", "2024-07-01")
    # 249 trading days of lookback + up to ~10% holidays + a Lunar New Year week = 282 weekdays, plus the day.
    assert ranges.lookback_weekdays("technical_indicators") == 282
    assert keys == _weekdays("2023-06-01", "2024-07-01") and len(keys) == 283
    # ... which covers the 249 trading days compute_range reads before it.
    assert set(previous_trading_days(dt.date(2024, 7, 1), 250)) <= {dt.date.fromisoformat(k) for k in keys}


@pytest.mark.parametrize("table", ["daily_quotes", "institutional_flows", "margin_balances"])
def test_chip_indicators_depend_on_74_weekdays_of_their_daily_tables(table):
    keys = _upstream_keys("chip_indicators", table, "2024-07-01")
    assert keys == _weekdays("2024-03-19", "2024-07-01") and len(keys) == 75


def test_fundamental_indicators_read_only_the_day_of_their_daily_tables():
    assert _upstream_keys("fundamental_indicators", "valuations", "2024-07-01") == ["2024-07-01"]


def test_the_first_partitions_have_a_window_reaching_before_the_calendar():
    # allow_nonexistent_upstream_partitions: day one of the partitions maps to what exists (itself).
    assert _upstream_keys("technical_indicators", "daily_quotes", "2020-01-02") == ["2020-01-02"]


@pytest.mark.parametrize("asset", ["technical_indicators", "chip_indicators"])
def test_the_weekday_window_always_spans_the_trading_day_lookback(asset):
    """Checked for every trading day 2021-2026 against the calendar (holidays, typhoons, Lunar New Year)."""
    lookback, weekdays = ranges.lookback_trading_days(asset), ranges.lookback_weekdays(asset)
    days = trading_days("2020-01-02", "2026-12-31")
    weekday_index = {d: i for i, d in enumerate(_weekdays("2020-01-02", "2026-12-31"))}
    worst = 0
    for i in range(len(days)):
        if days[i] < dt.date(2021, 1, 4):
            continue
        first_read = days[i - lookback]  # the oldest trading day compute_range reads for day i
        worst = max(worst, weekday_index[days[i].isoformat()] - weekday_index[first_read.isoformat()])
    assert worst <= weekdays, f"{asset}: {worst} weekdays needed, mapping declares {weekdays}"


def _check_evaluations(instance: dg.DagsterInstance, run_id: str) -> list:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.event_specific_data for r in records]


def test_a_failed_check_names_the_missing_lookback_and_the_command_first(qrl_home, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")
    instance = dg.DagsterInstance.get()
    outcome = cli.launch(
        cli.Launch(
            "trading_day_assets_job", ("2024-07-01", "2024-07-02"), assets=["daily_quotes", "technical_indicators"]
        )
    )
    assert not outcome.success  # sma_240 & co. in warm-up on a fresh home: the blocking missing_rate check fails
    evaluations = {(e.check_name, e.partition): e for e in _check_evaluations(instance, outcome.run_id)}
    first_lines = {
        day: evaluations[("missing_rate", day)].description.splitlines()[0] for day in ("2024-07-01", "2024-07-02")
    }
    assert first_lines == {
        "2024-07-01": "249 lookback partitions of daily_quotes not stored (2023-06-21…2024-06-28) — "
        "materialise them with `qrl backfill 2024-07-01 2024-07-02`",
        # 2024-07-01 is stored by the run itself, so the second day lacks one partition fewer.
        "2024-07-02": "248 lookback partitions of daily_quotes not stored (2023-06-26…2024-06-28) — "
        "materialise them with `qrl backfill 2024-07-01 2024-07-02`",
    }
    assert not evaluations[("missing_rate", "2024-07-01")].passed
    # A check that passes says nothing about history.
    assert evaluations[("no_infinities", "2024-07-01")].passed
    assert "lookback" not in evaluations[("no_infinities", "2024-07-01")].description
    # `qrl status` shows the same cause on its one screen.
    from qrl_platform.cli_status import status_lines

    assert status_lines(dt.date(2024, 7, 1), instance) == [
        "2024-07-01: trading day",
        "raw tables",
        "  daily_quotes            60 rows",
        "  institutional_flows     not stored",
        "  margin_balances         not stored",
        "  valuations              not stored",
        "  corporate_actions       not stored",
        "indicators",
        "  technical_indicators    60 rows; checks 3/4 passed",
        "                            missing_rate FAILED: 249 lookback partitions of daily_quotes not stored "
        "(2023-06-21…2024-06-28) — materialise them with `qrl backfill 2024-07-01 2024-07-02`",
        "  fundamental_indicators  not stored; checks: not materialised in this instance",
        "  chip_indicators         not stored; checks: not materialised in this instance",
        "signals                   none",
        "M13 event                 not published",
        "stats                     not computed",
    ]
