"""Retention of Dagster's own runs: which finished runs are old enough to delete (no Dagster here).

Dagster keeps every run and its event log forever. The 15-minute QRL job alone makes 96 runs a day
(35,040 a year, each ~250-340 KB on the local SQLite instance), so the `dagster_retention_job`
deletes old runs weekly. This module only decides; the Dagster op lists the candidates through the
public instance API and deletes the ones named here.

* Runs of the high-frequency jobs (`HIGH_FREQUENCY_JOBS`) are kept `high_frequency_days` (14).
* Every other run (the daily chain, the slower raw tables, maintenance) is kept `daily_days` (400):
  a year of the daily chain plus a margin, so last year's same day can still be compared in the UI.
* A run is deleted only once it has finished (success, failure or cancellation); a queued, starting
  or running run is never touched, however old, since its worker still writes to it.
* A run's age is counted from when it finished (its end time; its last update when Dagster recorded
  no end time, e.g. a run canceled before it started).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

# Jobs that run many times a day; their runs are worth keeping only for recent troubleshooting.
HIGH_FREQUENCY_JOBS: tuple[str, ...] = ("qrl_15min_job", "qrl_rebalance_job")

# Dagster's terminal run statuses, by their names (DagsterRunStatus.<name>.value).
FINISHED_STATUSES: frozenset[str] = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


@dataclass(frozen=True)
class RunRetentionPolicy:
    """How long runs are kept, in days, by kind of job."""

    high_frequency_days: int = 14
    daily_days: int = 400
    high_frequency_jobs: tuple[str, ...] = HIGH_FREQUENCY_JOBS

    def __post_init__(self) -> None:
        for name in ("high_frequency_days", "daily_days"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"Dagster run retention {name} must be at least 1 day, got {value}")

    def keep_days(self, job_name: str) -> int:
        return self.high_frequency_days if job_name in self.high_frequency_jobs else self.daily_days

    def cutoff(self, job_name: str, now: dt.datetime) -> dt.datetime:
        """Runs of `job_name` that finished before this instant are past retention."""
        return now - dt.timedelta(days=self.keep_days(job_name))

    @property
    def shortest_days(self) -> int:
        return min(self.high_frequency_days, self.daily_days)


@dataclass(frozen=True)
class RunSummary:
    """What the decision needs to know about one run (built from Dagster's RunRecord by the op)."""

    run_id: str
    job_name: str
    status: str  # a DagsterRunStatus value, e.g. "SUCCESS"
    finished_at: dt.datetime | None  # end time; None when Dagster recorded none
    updated_at: dt.datetime  # last status change

    @property
    def age_from(self) -> dt.datetime:
        return self.finished_at or self.updated_at


def runs_to_delete(runs: Iterable[RunSummary], now: dt.datetime, policy: RunRetentionPolicy) -> list[str]:
    """The ids of the finished runs that finished before their job's retention cutoff, in input order.

    `now` and every timestamp must be timezone-aware (comparing naive and aware instants would
    silently shift the cutoff by the host's UTC offset)."""
    if now.tzinfo is None:
        raise ValueError("runs_to_delete: now must be timezone-aware")
    doomed = []
    for run in runs:
        if run.status not in FINISHED_STATUSES:
            continue
        finished = run.age_from
        if finished.tzinfo is None:
            raise ValueError(f"runs_to_delete: run {run.run_id} has a naive timestamp {finished.isoformat()}")
        if finished < policy.cutoff(run.job_name, now):
            doomed.append(run.run_id)
    return doomed


@dataclass(frozen=True)
class RetentionResult:
    deleted_high_frequency: int
    deleted_other: int
    examined: int

    @property
    def deleted(self) -> int:
        return self.deleted_high_frequency + self.deleted_other
