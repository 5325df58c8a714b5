"""`qrl backfill START END --whole-chain` from an empty home: the slower-cadence tables and the raw
lookback history first, then raw -> indicators + checks -> strategies -> order-module event -> stats as ONE run."""

import dagster as dg
import pytest

import qrl_platform
from qrl_platform import cli

START, END = "2024-10-29", "2024-10-30"
CHAIN = {
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
    "m13_notification",
    "strategy_stats",
}


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    (tmp_path / "dagster").mkdir()
    monkeypatch.setenv("QRL_HOME", str(tmp_path / "qrl"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("QRL_DEMO_UNIVERSE", "40")
    monkeypatch.setenv("QRL_MARKET_SOURCE", "demo")
    monkeypatch.delenv("QRL_WAREHOUSE_URL", raising=False)
    return tmp_path


def test_whole_chain_backfill_from_an_empty_home_is_one_run_for_the_range(empty_home):
    assert cli.main(["backfill", START, END, "--whole-chain", "--lookback-days", "250"]) == 0
    instance = dg.DagsterInstance.get()
    runs = instance.get_runs()
    assert all(run.is_success for run in runs)
    chain = [r for r in runs if r.tags.get("dagster/asset_partition_range_start") == START]
    assert len(chain) == 1 and chain[0].tags["dagster/asset_partition_range_end"] == END
    assert {key.to_user_string() for key in chain[0].asset_selection} == CHAIN
    # The history run ends the trading day before START and holds 250 trading days of raw tables.
    history = [r for r in runs if r.tags.get("dagster/asset_partition_range_end") == "2024-10-28"]
    assert len(history) == 1
    quotes = qrl_platform.load("daily_quotes", start="2023-01-01", end="2024-10-28")
    assert quotes["trade_date"].n_unique() == 250  # open days only: closed partitions are stored empty
    executions = qrl_platform.load("strategy_executions", start=START, end=END)
    assert executions.height == 10 * 2 and (executions["status"] == "SUCCESS").all()
    assert sorted(d.isoformat() for d in qrl_platform.load("m13_notification", start=START, end=END)["trade_date"]) == [
        START,
        END,
    ]
    # The order-module events of the range's days are logged as one message, a line per day.
    notified = [
        entry.user_message
        for entry in instance.all_logs(chain[0].run_id)
        if entry.step_key == "m13_notification" and "published event" in entry.user_message
    ]
    assert len(notified) == 1 and [line.split(":")[0] for line in notified[0].splitlines()] == [START, END]


def test_whole_chain_refuses_a_strategy_subset(empty_home):
    with pytest.raises(SystemExit, match="--whole-chain runs every ACTIVE strategy"):
        cli.main(["backfill", START, END, "--whole-chain", "--strategies", "STG_VALUE_001"])
