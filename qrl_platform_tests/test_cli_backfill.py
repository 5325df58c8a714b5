"""`qrl backfill START END` on a fresh home: the lookback the indicators read is stored in the same run
as the raw days, indicators (with their blocking checks) and strategies of the range."""

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


def test_backfill_on_a_fresh_home_fills_the_lookback_in_the_same_run_then_runs_strategies_alone(fresh, capsys):
    assert cli.main(["backfill", START, END]) == 0
    out = capsys.readouterr().out
    assert "backfill: daily_quotes: 251 day(s) (2023-06-21…2024-07-02)" in out  # what was missing, said first

    runs = fresh.get_runs()
    [backfill] = [r for r in runs if r.tags.get("qrl/manual") == "backfill"]
    assert backfill.is_success
    assert (backfill.tags[cli.RANGE_START], backfill.tags[cli.RANGE_END]) == (START, END)
    assert {k.to_user_string() for k in backfill.asset_selection} == {
        "daily_quotes",
        "institutional_flows",
        "margin_balances",
        "valuations",
        "technical_indicators",
        "fundamental_indicators",
        "chip_indicators",
        "strategy_signals",
    }
    # The other runs are the prerequisites a trading-day run cannot hold: slower tables and registries.
    others = {tuple(sorted(k.to_user_string() for k in r.asset_selection)) for r in runs if r is not backfill}
    assert others == {
        ("monthly_revenue",),
        ("financials",),
        ("shareholding_distribution",),
        ("factor_metadata", "strategies"),
    }

    # Every check of both days passed in that run.
    evaluations = [
        r.dagster_event.event_specific_data
        for r in fresh.all_logs(backfill.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    indicators = [e for e in evaluations if e.asset_key.to_user_string().endswith("_indicators")]
    assert len(indicators) == 3 * 4 * 2  # 3 assets x 4 blocking checks x 2 days
    assert all(e.passed for e in evaluations), [e.description for e in evaluations if not e.passed]

    # The 249 lookback days before START are stored and recorded as materialisations of their partitions.
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
