"""`qrl backfill START END` on a fresh home: the stages a person would launch from the UI, each a range of
its own with no run config beyond the strategies': the missing slower tables, the raw tables' missing
lookback, then the raw days, indicators (with their blocking checks) and strategies of the range."""

import datetime as dt
import os

import dagster as dg
import pytest

import qrl_platform
from qrl_platform import cli
from qrl_platform.calendar import previous_trading_days

START, END = "2024-07-01", "2024-07-02"


@pytest.fixture
def fresh(qrl_home, tmp_path, monkeypatch):
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "60")
    monkeypatch.delenv("QRL_DAGSTER_URL", raising=False)
    return dg.DagsterInstance.get()


def test_backfill_on_a_fresh_home_fills_the_lookback_first_then_runs_strategies_alone(fresh, capsys):
    assert cli.main(["backfill", START, END]) == 0
    captured = capsys.readouterr()
    assert "backfill: daily_quotes: 251 day(s) (2023-06-21…2024-07-02)" in captured.out  # what was missing, first
    assert "first the raw tables' lookback 2023-06-21..2024-06-28, then raw, indicators and strategies" in captured.out
    # Progress on a non-terminal (pytest's stderr): exactly one line per stage, no redraws. The lookback
    # run covers every weekday partition (268, holidays stored empty) from 2023-06-21 to 2024-06-28.
    progress_lines = [line for line in captured.err.splitlines() if line.startswith("daily_quotes ")]
    assert "\r" not in captured.err
    assert [line.rsplit(" in ", 1)[0] for line in progress_lines] == [
        "daily_quotes 2023-06-21..2024-06-28: 268/268 days",
        "daily_quotes 2024-07-01..2024-07-02: 2/2 days",
    ]

    runs = fresh.get_runs()
    [backfill] = [r for r in runs if r.tags.get("qrl/manual") == "backfill"]
    assert backfill.is_success
    assert (backfill.tags[cli.RANGE_START], backfill.tags[cli.RANGE_END]) == (START, END)
    assert {k.to_user_string() for k in backfill.asset_selection} == {
        "daily_quotes",
        "institutional_flows",
        "margin_balances",
        "valuations",
        "corporate_actions",
        "tradability",
        "technical_indicators",
        "fundamental_indicators",
        "chip_indicators",
        "strategy_signals",
    }
    assert not backfill.run_config.get("ops", {}).keys() - {"strategy_signals"}  # no config but the strategies'
    # The other runs: the prerequisites a trading-day run of the range cannot hold (slower tables and
    # registries), and the raw tables over the lookback.
    others = {tuple(sorted(k.to_user_string() for k in r.asset_selection)) for r in runs if r is not backfill}
    assert others == {
        ("corporate_actions", "daily_quotes", "institutional_flows", "margin_balances", "valuations"),
        ("monthly_revenue",),
        ("financials",),
        ("shareholding_distribution",),
        ("factor_metadata", "strategies"),
    }

    # A range run of the CLI plans each asset once for the whole range (RANGE_RUN_DAGSTER_ENVIRONMENT),
    # not once per day and asset, and leaves the process environment as it found it.
    planned = [
        r.dagster_event.event_specific_data
        for r in fresh.all_logs(backfill.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
    ]
    assert len(planned) == 10 and all(p.partition is None and p.partitions_subset is not None for p in planned)
    assert all(sorted(p.partitions_subset.get_partition_keys()) == [START, END] for p in planned)
    assert "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS" not in os.environ

    # Every check of both days passed in that run.
    evaluations = [
        r.dagster_event.event_specific_data
        for r in fresh.all_logs(backfill.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    indicators = [e for e in evaluations if e.asset_key.to_user_string().endswith("_indicators")]
    # Both days passed: 3 assets x 4 blocking checks, each recorded once for the run's two days.
    assert len(indicators) == 3 * 4 and {e.partition for e in indicators} == {None}
    assert {e.metadata["days_checked"].value for e in indicators} == {2}
    assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]

    # The 249 lookback days before START are stored, each a materialisation of its partition.
    lookback = previous_trading_days(START, 250)[:-1]
    assert (lookback[0].isoformat(), lookback[-1].isoformat()) == ("2023-06-21", "2024-06-28")
    stored = set(fresh.get_materialized_partitions(dg.AssetKey("daily_quotes")))
    assert {d.isoformat() for d in lookback} <= stored and {START, END} <= stored
    assert qrl_platform.load("daily_quotes", lookback[0].isoformat()).height == 60

    signals = qrl_platform.load("strategy_signals", start=START, end=END)
    assert sorted({d.isoformat() for d in signals["trade_date"]}) == [START, END]

    # Again, with everything stored: the strategies alone, as one run of strategies_job.
    runs_before = len(fresh.get_runs())
    assert cli.main(["backfill", START, END, "--strategies", "STG_VALUE_001"]) == 0
    [latest] = fresh.get_runs(limit=1)
    assert len(fresh.get_runs()) == runs_before + 1
    assert latest.job_name == "strategies_job" and latest.is_success

    # `qrl status` of a materialised day, before and after the order module consumed the day's event.
    from qrl_platform.cli_status import status_lines
    from qrl_platform.settings import settings
    from qrl_platform.warehouse import Warehouse
    from qrl_platform_tests.notify.m13_consumer import M13Consumer

    assert cli.main(["notify", END]) == 0
    assert cli.main(["stats", END]) == 0
    stats = qrl_platform.load("strategy_stats", END)
    assert stats["strategy_id"].n_unique() == 10
    [event] = qrl_platform.load("m13_notification", END).to_dicts()
    rows = {t: qrl_platform.load(t, END).height for t in ("daily_quotes", "institutional_flows", "margin_balances")}
    assert rows["daily_quotes"] == 60
    signals = qrl_platform.load("strategy_signals", END)
    mix = {kind: signals.filter(signals["signal"] == kind).height for kind in ("BUY", "SELL", "HOLD")}
    expected = [
        f"{END}: trading day",
        "raw tables",
        f"  daily_quotes            {rows['daily_quotes']} rows",
        f"  institutional_flows     {rows['institutional_flows']} rows",
        f"  margin_balances         {rows['margin_balances']} rows",
        f"  valuations              {qrl_platform.load('valuations', END).height} rows",
        f"  corporate_actions       {qrl_platform.load('corporate_actions', END).height} rows",
        "indicators",
        "  technical_indicators    60 rows; checks 4/4 passed",
        "  fundamental_indicators  60 rows; checks 4/4 passed",
        "  chip_indicators         60 rows; checks 4/4 passed",
        f"signals                   {signals.height} from 10 strategies: "
        f"BUY {mix['BUY']}, SELL {mix['SELL']}, HOLD {mix['HOLD']}",
        f"M13 event                 published {event['created_at']:%Y-%m-%d %H:%M} (event {event['event_id'][:12]}), "
        "consumed: no",
        f"stats                     {stats.height} rows, 10 strategies",
    ]
    assert signals.height == sum(mix.values()) > 0
    assert status_lines(dt.date.fromisoformat(END), fresh) == expected

    warehouse = Warehouse(settings().warehouse_url)
    consumer = M13Consumer(warehouse)
    for received in consumer.poll():
        consumer.ack(received)
    consumed = qrl_platform.load("m13_notification", END)["consumed_at"][0]
    assert status_lines(dt.date.fromisoformat(END), fresh)[-2] == (
        f"M13 event                 published {event['created_at']:%Y-%m-%d %H:%M} (event {event['event_id'][:12]}), "
        f"consumed {consumed:%Y-%m-%d %H:%M} by m13-1"
    )
    warehouse.dispose()
