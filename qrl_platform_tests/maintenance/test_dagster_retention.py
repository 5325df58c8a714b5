"""DAGSTER_RETENTION: the decision (plain function) and the job on a real SQLite instance built from
the project's dagster.yaml: old finished runs go with their events, files and logs; young runs, the
daily chain's runs and unfinished runs stay."""

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from qrl_platform.defs.maintenance.dagster_retention import apply_run_retention, dagster_retention_job
from qrl_platform.maintenance.dagster_retention import RunRetentionPolicy, RunSummary, runs_to_delete
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.maintenance.dagster_runs import backdate_run
from qrl_platform_tests.servers import local_dagster_home

NOW = dt.datetime(2026, 12, 6, 3, 30, tzinfo=dt.UTC)


def _run(run_id, job="qrl_15min_job", status="SUCCESS", days_ago=20.0, finished=True):
    moment = NOW - dt.timedelta(days=days_ago)
    return RunSummary(run_id, job, status, moment if finished else None, moment)


# ------------------------------------------------------------------ the decision


def test_high_frequency_runs_go_after_their_short_age_and_other_runs_after_the_long_one():
    policy = RunRetentionPolicy(high_frequency_days=14, daily_days=400)
    runs = [
        _run("hf-old", days_ago=14.01),
        _run("hf-young", days_ago=13.99),
        _run("rebalance-old", job="qrl_rebalance_job", days_ago=30),
        _run("daily-20d", job="daily_market_job", days_ago=20),
        _run("daily-399d", job="strategies_job", days_ago=399.9),
        _run("daily-401d", job="strategies_job", days_ago=401),
        _run("retention-401d", job="dagster_retention_job", days_ago=401),
    ]
    assert runs_to_delete(runs, NOW, policy) == ["hf-old", "rebalance-old", "daily-401d", "retention-401d"]


@pytest.mark.parametrize("status", ["QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING", "MANAGED"])
def test_a_run_that_has_not_finished_is_never_deleted_however_old(status):
    assert runs_to_delete([_run("r", status=status, days_ago=1000)], NOW, RunRetentionPolicy()) == []


@pytest.mark.parametrize("status", ["SUCCESS", "FAILURE", "CANCELED"])
def test_every_finished_status_is_deleted_once_old(status):
    assert runs_to_delete([_run("r", status=status, days_ago=15)], NOW, RunRetentionPolicy()) == ["r"]


def test_age_counts_from_the_end_time_and_from_the_last_update_without_one():
    started_long_ago = RunSummary(
        "r", "qrl_15min_job", "SUCCESS", NOW - dt.timedelta(days=1), NOW - dt.timedelta(days=1)
    )
    never_started = _run("c", status="CANCELED", days_ago=15, finished=False)
    assert runs_to_delete([started_long_ago, never_started], NOW, RunRetentionPolicy()) == ["c"]


def test_bad_policies_and_naive_times_are_refused_by_name():
    with pytest.raises(ValueError, match="high_frequency_days must be at least 1 day, got 0"):
        RunRetentionPolicy(high_frequency_days=0)
    with pytest.raises(ValueError, match="daily_days"):
        RunRetentionPolicy(daily_days=-5)
    with pytest.raises(ValueError, match="timezone-aware"):
        runs_to_delete([], NOW.replace(tzinfo=None), RunRetentionPolicy())
    naive = RunSummary("r9", "qrl_15min_job", "SUCCESS", dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="run r9 has a naive timestamp"):
        runs_to_delete([naive], NOW, RunRetentionPolicy())


def test_the_ages_come_from_the_environment(monkeypatch):
    from qrl_platform.settings import settings

    assert (settings({}).dagster_runs_high_frequency_days, settings({}).dagster_runs_daily_days) == (14, 400)
    current = settings({"QRL_DAGSTER_RUNS_HIGH_FREQUENCY_DAYS": "7", "QRL_DAGSTER_RUNS_DAILY_DAYS": "730"})
    assert (current.dagster_runs_high_frequency_days, current.dagster_runs_daily_days) == (7, 730)
    with pytest.raises(ValueError, match="QRL_DAGSTER_RUNS_DAILY_DAYS must be at least 1"):
        settings({"QRL_DAGSTER_RUNS_DAILY_DAYS": "0"})


# ------------------------------------------------------------------ on a real instance


def project_instance(home: Path) -> dg.DagsterInstance:
    """An instance configured by the project's local dagster.yaml (retention block included), under `home`."""
    return dg.DagsterInstance.from_config(str(local_dagster_home(home)))


@dg.op
def chatty_step(context: dg.OpExecutionContext) -> None:
    for number in range(20):
        context.log.info(f"event {number}")
    print("to the captured stdout")
    context.log_event(dg.AssetMaterialization("retention_probe"))


@dg.job(name="qrl_15min_job")
def fake_quarter_hour_job():
    chatty_step()


@dg.job(name="daily_market_job")
def fake_daily_job():
    chatty_step()


def _age(instance_home: Path, run_id: str, days: float, status: str | None = None) -> None:
    backdate_run(instance_home, run_id, dt.datetime.now(dt.UTC) - dt.timedelta(days=days), status=status)


def _files_of(home: Path, run_id: str) -> list[Path]:
    return [path for path in home.rglob(f"*{run_id}*")]


def test_the_job_deletes_old_finished_runs_with_their_events_and_files_and_keeps_the_rest(tmp_path):
    home = tmp_path / "dagster_home"
    instance = project_instance(home)
    ages = {"hf_old": (fake_quarter_hour_job, 20), "hf_young": (fake_quarter_hour_job, 5),
            "hf_running": (fake_quarter_hour_job, 20), "daily_20d": (fake_daily_job, 20),
            "daily_500d": (fake_daily_job, 500)}  # fmt: skip
    ids = {}
    for name, (job, days) in ages.items():
        ids[name] = job.execute_in_process(instance=instance).run_id
        _age(home, ids[name], days, status="STARTED" if name == "hf_running" else None)
    doomed = (ids["hf_old"], ids["daily_500d"])
    for run_id in doomed:
        assert instance.all_logs(run_id) and _files_of(home, run_id)  # events, event file, captured logs
    assert len(instance.fetch_materializations(dg.AssetKey("retention_probe"), limit=10).records) == 5

    # The ages the settings give (14 and 400 days by default), as the code location binds them.
    resources = {"run_retention": configured_resources()["run_retention"]}
    dry = dagster_retention_job.execute_in_process(
        instance=instance,
        run_config={"ops": {"dagster_retention_op": {"config": {"dry_run": True}}}},
        resources=resources,
    )
    assert dry.success and {r.dagster_run.run_id for r in instance.get_run_records()} >= set(ids.values())

    result = dagster_retention_job.execute_in_process(instance=instance, resources=resources)

    assert result.success
    remaining = {record.dagster_run.run_id for record in instance.get_run_records()}
    assert remaining == {ids["hf_young"], ids["hf_running"], ids["daily_20d"], dry.run_id, result.run_id}
    for run_id in doomed:
        assert instance.get_run_by_id(run_id) is None
        assert _files_of(home, run_id) == []  # its event-log file and its captured stdout/stderr
        # Read through a fresh instance, as the webserver would, and after the files: this test's
        # instance remembers the file it opened before, and reading a run's events opens (so recreates)
        # an empty file for it.
        assert project_instance(home).all_logs(run_id) == []
    for name in ("hf_young", "hf_running", "daily_20d"):
        assert len(instance.all_logs(ids[name])) > 20, name
    assert len(instance.fetch_materializations(dg.AssetKey("retention_probe"), limit=10).records) == 3
    (output,) = [e for e in result.all_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert (metadata["deleted_high_frequency_runs"], metadata["deleted_other_runs"]) == (1, 1)
    assert (metadata["high_frequency_days"], metadata["daily_days"]) == (14, 400)


def test_ages_set_in_the_job_config_override_the_environment(tmp_path):
    home = tmp_path / "dagster_home"
    instance = project_instance(home)
    daily = fake_daily_job.execute_in_process(instance=instance).run_id
    _age(home, daily, 40)
    policy = RunRetentionPolicy(high_frequency_days=14, daily_days=30)
    result = apply_run_retention(instance, policy, dt.datetime.now(dt.UTC))
    assert (result.deleted_other, result.deleted_high_frequency) == (1, 0)
    assert instance.get_run_by_id(daily) is None


def test_tick_retention_is_set_alike_in_the_local_and_the_deployed_instance(tmp_path):
    import yaml

    from qrl_platform_tests.servers import REPO_ROOT

    local, deployed = (
        yaml.safe_load((REPO_ROOT / name).read_text()) for name in ("dagster.yaml", "deploy/dagster.yaml")
    )
    assert local["retention"] == deployed["retention"]
    assert local["retention"]["schedule"]["purge_after_days"] == 90
    assert local["retention"]["sensor"]["purge_after_days"]["skipped"] == 7
    project_instance(tmp_path / "home")  # Dagster accepts the local file, retention block included
