"""The whole trading day end to end on the demo market, through the README's `qrl demo` and the
manual operations: raw → indicators → strategies → order-module event → stats, all as Dagster runs."""

import logging
import logging.handlers

import dagster as dg
import polars as pl
import pytest

import qrl_platform
from qrl_platform import cli
from qrl_platform.definitions import PARTITIONS_NAMES

END = "2024-11-01"  # the week of the 2024-10-31 typhoon closure


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    home = tmp_path_factory.mktemp("chain")
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    patch = pytest.MonkeyPatch()
    patch.setenv("QRL_HOME", str(home / "qrl"))
    patch.setenv("DAGSTER_HOME", str(dagster_home))
    patch.setenv("QRL_DEMO_UNIVERSE", "120")
    patch.delenv("QRL_WAREHOUSE_URL", raising=False)
    patch.setenv("QRL_MARKET_SOURCE", "demo")
    # Every warning Dagster's own modules log while the demo runs (a newcomer reads them as failures).
    capture = logging.handlers.BufferingHandler(capacity=100_000)
    capture.setLevel(logging.WARNING)
    logging.getLogger("dagster").addHandler(capture)
    try:
        assert cli.main(["demo", "--days", "3", "--end", END]) == 0
    finally:
        logging.getLogger("dagster").removeHandler(capture)
    DEMO_WARNINGS.extend(record.getMessage() for record in capture.buffer)
    yield dg.DagsterInstance.get()
    patch.undo()


DEMO_WARNINGS: list[str] = []


def test_the_demo_logs_no_blocking_check_without_a_result(chain):
    """Every blocking check in a demo run gives its result, so Dagster gates on it and says nothing."""
    assert not [message for message in DEMO_WARNINGS if "emitted no result" in message]


def test_demo_runs_the_whole_chain_as_runs_in_the_instance(chain):
    runs = chain.get_runs()
    assert runs and all(run.is_success for run in runs)
    jobs = {run.job_name for run in runs}
    # The CLI's asset jobs, one per partitions definition (definitions.py).
    assert "trading_day_assets_job" in jobs
    assert jobs <= {f"{name}_assets_job" for name in PARTITIONS_NAMES.values()}
    # The daily chain over the last 3 trading days is one run (single-run backfill).
    chain_runs = [r for r in runs if r.tags.get("dagster/asset_partition_range_start") == "2024-10-29"]
    assert len(chain_runs) == 1 and chain_runs[0].tags["dagster/asset_partition_range_end"] == END
    # The QRL treasury's latest quarter hour ran too, on the simulated exchange.
    assert qrl_platform.load("rebalance_plan").height == 1


def test_every_stage_stored_its_rows(chain):
    days = ["2024-10-29", "2024-10-30", "2024-11-01"]
    technical = qrl_platform.load("technical_indicators", start=days[0], end=END)
    assert sorted({d.isoformat() for d in technical["trade_date"].unique()}) == days
    assert technical["sma_240"].null_count() / technical.height < 0.2
    assert qrl_platform.load("technical_indicators", "2024-10-31").height == 0  # typhoon: empty, not failed
    signals = qrl_platform.load("strategy_signals", start=days[0], end=END)
    assert set(signals["signal"].unique()) <= {"BUY", "SELL", "HOLD"} and signals.height > 0
    executions = qrl_platform.load("strategy_executions", start=days[0], end=END)
    assert executions.height == 10 * len(days) and (executions["status"] == "SUCCESS").all()
    per_execution = signals.group_by("execution_id").len()
    joined = executions.join(per_execution, on="execution_id", how="left").with_columns(pl.col("len").fill_null(0))
    assert (joined["signals_generated"] == joined["len"]).all()
    events = qrl_platform.load("m13_notification", start=days[0], end=END)
    assert sorted(d.isoformat() for d in events["trade_date"]) == days
    stats = qrl_platform.load("strategy_stats", END)
    assert set(stats["period_days"].unique()) == {7, 30, 90} and stats["strategy_id"].n_unique() == 10


def test_manual_operations(chain):
    before = qrl_platform.load("strategy_signals", END)
    assert cli.main(["run-strategy", "STG_MOMENTUM_001", END, "--dry-run"]) == 0
    assert qrl_platform.load("strategy_signals", END).equals(before)  # a dry run writes nothing
    assert cli.main(["run-all", END]) == 0
    after = qrl_platform.load("strategy_signals", END)
    assert sorted(after["signal_id"].to_list()) == sorted(before["signal_id"].to_list())  # no duplicates
    assert cli.main(["notify", END]) == 0
    assert qrl_platform.load("m13_notification", END).height == 1  # idempotent
    assert cli.main(["notify", END, "--force"]) == 0
    assert qrl_platform.load("m13_notification", END).height == 2
    assert cli.main(["backfill", "2024-10-29", "2024-10-30", "--strategies", "STG_VALUE_001"]) == 0
    backfill = chain.get_runs(limit=1)[0]
    assert backfill.tags["qrl/manual"] == "backfill" and backfill.is_success


def test_retry_reruns_a_failed_run(chain, monkeypatch):
    def broken(*args, **kwargs):
        # Final (allow_retries=False): the job's step retry policy (minutes of backoff) does not retry it.
        raise dg.Failure("strategies refused the day", allow_retries=False)

    monkeypatch.setattr("qrl_platform.defs.strategies.assets.run_strategy_days", broken)
    assert cli.main(["run-all", END]) == 1
    failed = chain.get_runs(limit=1)[0]
    assert failed.status == dg.DagsterRunStatus.FAILURE
    monkeypatch.undo()
    assert cli.main(["retry", failed.run_id]) == 0
    retried = chain.get_runs(limit=1)[0]
    assert retried.tags["qrl/retry_of"] == failed.run_id and retried.is_success
    assert retried.tags["dagster/partition"] == END
