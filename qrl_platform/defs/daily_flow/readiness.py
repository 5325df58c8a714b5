"""Is a partition of an asset materialised, and did its checks pass? Read from the Dagster instance.

The daily flow gates each stage on the previous one (strategies only after M07/M08/M09 passed their
blocking checks; M13 only after the strategies). Schedules, the catch-up sensor and the strategy
asset itself ask the same questions here, so the rule lives in one place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str = ""


def is_materialized(instance: dg.DagsterInstance, asset: str, partition: str | None) -> bool:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    )
    return bool(records.records)


def failed_checks(
    instance: dg.DagsterInstance, check_keys: Iterable[dg.AssetCheckKey], partition: str | None
) -> list[str]:
    """Checks whose latest evaluation for `partition` failed with ERROR severity (WARN never blocks)."""
    failed = []
    for key in check_keys:
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=1, partition_filter=PartitionKeyFilter(key=partition) if partition else None
        )
        if not history or history[0].status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        evaluation = history[0].event.asset_check_evaluation if history[0].event else None
        if evaluation is None or evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(key.to_user_string())
    return failed


def upstream_ready(
    instance: dg.DagsterInstance,
    assets: Iterable[str],
    partition: str,
    check_keys: Iterable[dg.AssetCheckKey] = (),
) -> Readiness:
    missing = [a for a in assets if not is_materialized(instance, a, partition)]
    if missing:
        return Readiness(False, f"{partition}: not materialised yet: {', '.join(missing)}")
    failed = failed_checks(instance, check_keys, partition)
    if failed:
        return Readiness(False, f"{partition}: blocking check(s) failed: {', '.join(failed)}")
    return Readiness(True)


def run_in_flight_or_done(instance: dg.DagsterInstance, job_name: str, partition: str) -> bool:
    """A run of `job_name` for `partition` is queued, running or succeeded (so don't launch another)."""
    statuses = [
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.SUCCESS,
    ]
    runs = instance.get_runs(
        filters=dg.RunsFilter(job_name=job_name, tags={"dagster/partition": partition}, statuses=statuses), limit=1
    )
    return bool(runs)
