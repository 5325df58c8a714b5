"""Exchange concurrency is the pools alone: on an instance built from the repository's own
dagster.yaml, a MOPS step and a TWSE step run at the same time, while two TWSE steps never overlap.

Each run is its own process (pool_steps.py), as separate run workers are. The steps sit in the same
pools as the product's assets (`POOLS` in defs/market/assets.py) and meet through files instead of
sleeping: overlap is proven by each step seeing the other one start while it runs, non-overlap by the
second TWSE step being queued on the pool (Dagster's pool slot claims) while the first one runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from qrl_platform.defs.market.assets import POOLS
from qrl_platform.defs.market.jobs import PERIODIC_JOBS, TABLE_JOBS

ROOT = Path(__file__).resolve().parents[2]
TWSE_POOL = POOLS["daily_quotes"]
MOPS_POOL = POOLS["monthly_revenue"]


@pytest.fixture
def dagster_home(tmp_path) -> Path:
    """A DAGSTER_HOME holding the repository's dagster.yaml, its storage moved into the temp dir."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    local = (ROOT / "dagster.yaml").read_text().replace(".qrl/dagster_storage", str(home / "storage"))
    (home / "dagster.yaml").write_text(local)
    with dg.DagsterInstance.from_config(str(home)):
        pass  # creates the storages once, before the run workers open them concurrently
    return home


def _run_together(
    home: Path, shared: Path, *steps: tuple[str, str, str, str], second_once_first_runs: bool = False
) -> dict[str, dict]:
    """Start one run worker per (name, pool, other, mode) at once; what each step saw, by name.
    `second_once_first_runs`: the second worker starts once the first step is running (holding its slot).

    Why the two TWSE steps are not started at the same instant: Dagster claims a pool slot by reading a
    free slot row and then updating it, two statements. Two claims in the same millisecond can both read
    the free row and both succeed (on SQLite `FOR UPDATE` is ignored; on PostgreSQL the row lock ends
    with the read), and a run of this suite saw that once: both steps started 3 ms apart. The pool
    serialises every step that asks while another holds the slot, which is what this test shows."""
    shared.mkdir()

    def start(step):
        return subprocess.Popen(
            [sys.executable, "-m", "qrl_platform_tests.market.pool_steps", str(home), *step, str(shared)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    workers = [start(steps[0])]
    if second_once_first_runs:
        started = shared / f"{steps[0][0]}.started"
        deadline = time.monotonic() + 240
        while not started.exists() and workers[0].poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), "the first step did not start"
    workers += [start(step) for step in steps[1:]]
    for worker in workers:
        _, stderr = worker.communicate(timeout=240)
        assert worker.returncode == 0, stderr[-3000:]
    return {name: json.loads((shared / f"{name}.json").read_text()) for name, *_ in steps}


def test_exchange_jobs_carry_no_exchange_run_tag_and_every_pool_admits_one_step():
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"] == {"default_limit": 1, "granularity": "op"}
    run_limits = config["concurrency"]["runs"].get("tag_concurrency_limits", [])
    assert all(limit["key"] != "qrl/exchange" for limit in run_limits)
    for job in (TABLE_JOBS["daily_quotes"], *PERIODIC_JOBS.values()):
        assert "qrl/exchange" not in job.tags, job.name
    assert (POOLS["daily_quotes"], POOLS["monthly_revenue"], POOLS["shareholding_distribution"]) == (
        "twse-tpex",
        "mops",
        "tdcc",
    )


def test_a_mops_step_and_a_twse_step_run_at_the_same_time(dagster_home, tmp_path):
    seen = _run_together(
        dagster_home,
        tmp_path / "shared",
        ("twse_step", TWSE_POOL, "mops_step", "meet"),
        ("mops_step", MOPS_POOL, "twse_step", "meet"),
    )
    # Each step was running when the other one started: neither waited for the other's pool.
    assert seen["twse_step"]["saw"] and seen["mops_step"]["saw"]
    twse, mops = seen["twse_step"], seen["mops_step"]
    assert twse["start"] < mops["end"] and mops["start"] < twse["end"]


def test_two_twse_steps_do_not_overlap(dagster_home, tmp_path):
    seen = _run_together(
        dagster_home,
        tmp_path / "shared",
        ("quotes_step", TWSE_POOL, "flows_step", "exclusive"),
        ("flows_step", TWSE_POOL, "quotes_step", "exclusive"),
        second_once_first_runs=True,
    )
    # The step that got the pool's slot saw the other one queued on the pool and not yet started.
    assert sorted(step["saw"] for step in seen.values()) == [False, True]
    first, second = sorted(seen.values(), key=lambda step: step["start"])
    assert first["saw"] and first["end"] <= second["start"]


def test_two_treasury_runs_never_interleave_through_their_warehouse_writer_group():
    """Not an exchange rule: the quarter hours of the treasury plan against balances the other may be
    changing, so both QRL jobs share a warehouse-writer group that both instances limit to one run."""
    from qrl_platform.defs.treasury.jobs import QRL_JOBS

    assert {job.tags.get("qrl/warehouse-writer") for job in QRL_JOBS} == {"qrl"}
    for path in (ROOT / "dagster.yaml", ROOT / "deploy" / "dagster.yaml"):
        limits = yaml.safe_load(path.read_text())["concurrency"]["runs"]["tag_concurrency_limits"]
        (writer,) = [limit for limit in limits if limit["key"] == "qrl/warehouse-writer"]
        assert writer == {"key": "qrl/warehouse-writer", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}, path
