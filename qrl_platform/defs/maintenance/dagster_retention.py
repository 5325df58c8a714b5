"""DAGSTER_RETENTION: delete old finished runs of Dagster's own storage (runs and their event logs)
through the public instance API; which runs go is decided by qrl_platform.maintenance.dagster_retention."""

import contextlib
import datetime as dt
import os
from collections.abc import Iterator

import dagster as dg

from qrl_platform.defs.job_tags import STEP_RETRY, job_tags
from qrl_platform.defs.resources import RunRetentionResource
from qrl_platform.maintenance.dagster_retention import (
    FINISHED_STATUSES,
    RetentionResult,
    RunRetentionPolicy,
    RunSummary,
    runs_to_delete,
)

# Runs read per storage query: a year of 15-minute runs (35,040) is read in pages of this size.
PAGE_SIZE = 1000
_FINISHED = [dg.DagsterRunStatus(status) for status in sorted(FINISHED_STATUSES)]


class DagsterRetentionConfig(dg.Config):
    """Days to keep runs; unset means the run_retention resource's (QRL_DAGSTER_RUNS_*_DAYS)."""

    high_frequency_days: int | None = None
    daily_days: int | None = None
    dry_run: bool = False  # log what would be deleted, delete nothing


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _summary(record: dg.RunRecord) -> RunSummary:
    run = record.dagster_run
    return RunSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        finished_at=dt.datetime.fromtimestamp(record.end_time, dt.UTC) if record.end_time else None,
        updated_at=_aware(record.update_timestamp),
    )


def _finished_runs(instance: dg.DagsterInstance, *, updated_before: dt.datetime, job_name: str | None = None):
    """Every finished run (of `job_name`, or of any job) last updated before `updated_before`, page by page."""
    cursor = None
    while True:
        records = instance.get_run_records(
            dg.RunsFilter(job_name=job_name, statuses=_FINISHED, updated_before=updated_before),
            limit=PAGE_SIZE,
            cursor=cursor,
        )
        yield from (_summary(record) for record in records)
        if len(records) < PAGE_SIZE:
            return
        cursor = records[-1].dagster_run.run_id


def candidate_runs(instance: dg.DagsterInstance, policy: RunRetentionPolicy, now: dt.datetime) -> Iterator[RunSummary]:
    """Finished runs that may be past retention: each high-frequency job's runs older than its short
    age, and any job's runs older than the long one (the decision function has the final word)."""
    seen: set[str] = set()
    queries = [dict(job_name=job, updated_before=policy.cutoff(job, now)) for job in policy.high_frequency_jobs]
    queries.append(dict(updated_before=now - dt.timedelta(days=policy.daily_days)))
    for query in queries:
        for run in _finished_runs(instance, **query):
            if run.run_id not in seen:
                seen.add(run.run_id)
                yield run


def apply_run_retention(
    instance: dg.DagsterInstance, policy: RunRetentionPolicy, now: dt.datetime, *, dry_run: bool = False, log=None
) -> RetentionResult:
    """Delete (unless `dry_run`) the finished runs past `policy` as of `now`, with their events."""
    # Listed completely before deleting: paging by cursor over rows being deleted would skip pages.
    candidates = list(candidate_runs(instance, policy, now))
    doomed = set(runs_to_delete(candidates, now, policy))
    high_frequency = sum(1 for run in candidates if run.run_id in doomed and run.job_name in policy.high_frequency_jobs)
    if not dry_run:
        for number, run_id in enumerate(sorted(doomed), start=1):
            instance.delete_run(run_id)  # the run and its events
            _remove_run_shard(instance, run_id)
            instance.compute_log_manager.delete_logs(prefix=[run_id])  # captured stdout/stderr, if kept locally
            if log and number % 1000 == 0:
                log(f"dagster retention: {number}/{len(doomed)} runs deleted")
    return RetentionResult(
        deleted_high_frequency=high_frequency, deleted_other=len(doomed) - high_frequency, examined=len(candidates)
    )


def _remove_run_shard(instance: dg.DagsterInstance, run_id: str) -> None:
    """Dagster's local SQLite event log keeps one file per run (~180 KB), and `delete_run` empties it
    without removing it: 35,040 empty files a year for the 15-minute job. That storage names the file
    with its public `path_for_shard`; other storages (PostgreSQL) have no per-run file and no such method."""
    path_for_shard = getattr(instance.event_log_storage, "path_for_shard", None)
    if not callable(path_for_shard):
        return
    path = path_for_shard(run_id)
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


@dg.op(description="Delete finished Dagster runs past their retention, with their event logs.")
def dagster_retention_op(
    context: dg.OpExecutionContext, config: DagsterRetentionConfig, run_retention: RunRetentionResource
) -> dg.Output[None]:
    policy = RunRetentionPolicy(
        high_frequency_days=config.high_frequency_days or run_retention.high_frequency_days,
        daily_days=config.daily_days or run_retention.daily_days,
    )
    result = apply_run_retention(
        context.instance, policy, dt.datetime.now(dt.UTC), dry_run=config.dry_run, log=context.log.info
    )
    verb = "would delete" if config.dry_run else "deleted"
    context.log.info(
        f"dagster retention: {verb} {result.deleted_high_frequency} run(s) of {', '.join(policy.high_frequency_jobs)} "
        f"older than {policy.high_frequency_days} d and {result.deleted_other} other run(s) older than "
        f"{policy.daily_days} d ({result.examined} examined)"
    )
    return dg.Output(
        None,
        metadata={
            "deleted_high_frequency_runs": result.deleted_high_frequency,
            "deleted_other_runs": result.deleted_other,
            "examined_runs": result.examined,
            "high_frequency_days": policy.high_frequency_days,
            "daily_days": policy.daily_days,
            "dry_run": config.dry_run,
        },
    )


@dg.job(
    description="DAGSTER_RETENTION (Sunday 03:30): delete finished runs of the 15-minute QRL jobs older than "
    "14 days and of every other job older than 400 days, with their events (QRL_DAGSTER_RUNS_*_DAYS).",
    tags=job_tags(estimate_seconds=300, retries=1),
    op_retry_policy=STEP_RETRY,
)
def dagster_retention_job():
    dagster_retention_op()
