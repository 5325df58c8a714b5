"""How the blocking checks judged a day's upstream partition, read from the Dagster instance through
its public API only (`fetch_materializations`, `get_records_for_run`, `get_run_records`).

The daily flow's stages are launched by Dagster's automation conditions (`defs/daily_flow/`), which
wait for blocking checks themselves. This module answers the question inside a run:
`strategy_signals` refuses a day whose indicator partitions failed a blocking check and reports the
days whose checks were never evaluated (frames written by a notebook or the CLI have no check
evaluations). Per check, the latest evaluation made after the latest materialisation counts (in the
run that materialised it, or in a later run of the checks — so deleting a row and re-running the
checks is seen). A check evaluated with WARN severity never blocks.

The market schedule asks `run_in_flight_or_done` so that 16:00 never launches a day twice.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import dagster as dg

MAX_LATER_RUNS = 500  # runs after a materialisation searched for re-runs of its checks


@dataclass(frozen=True)
class CheckStatus:
    """Blocking checks of one asset partition that failed or were never evaluated, and the run judged."""

    failures: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    run_id: str | None = None
    materialized: bool = False


def latest_materialization(instance: dg.DagsterInstance, asset: str, partition: str | None) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition] if partition else None),
        limit=1,
    ).records
    return records[0] if records else None


def is_materialized(instance: dg.DagsterInstance, asset: str, partition: str | None) -> bool:
    return latest_materialization(instance, asset, partition) is not None


@dataclass(frozen=True)
class _Evaluation:
    timestamp: float
    run_id: str
    evaluation: dg.AssetCheckEvaluation


def _evaluations_in_run(instance: dg.DagsterInstance, run_id: str) -> dict[dg.AssetKey, list[_Evaluation]]:
    """The check evaluations logged in run `run_id` per asset, oldest first ("" = runless events)."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    found: dict[dg.AssetKey, list[_Evaluation]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        evaluation = event.event_specific_data if event is not None else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            found.setdefault(evaluation.asset_key, []).append(_Evaluation(record.timestamp, run_id, evaluation))
    return found


def latest_materializations(
    instance: dg.DagsterInstance, asset: str, partitions: list[str]
) -> dict[str, dg.EventLogRecord]:
    """partition -> the record of its latest materialisation, for the partitions that have one (pages
    through the asset's materialisations, newest first, until each partition is found)."""
    found: dict[str, dg.EventLogRecord] = {}
    cursor = None
    while len(found) < len(partitions):
        result = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=partitions), limit=1000, cursor=cursor
        )
        for record in result.records:  # newest first
            if record.partition_key is not None and record.partition_key not in found:
                found[record.partition_key] = record
        if not result.has_more:
            break
        cursor = result.cursor
    return found


def _covers(run: dg.DagsterRun, partition: str) -> bool:
    """The run targeted `partition` (one partition, or a range of date keys around it)."""
    tags = run.tags
    if tags.get("dagster/partition") == partition:
        return True
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return bool(start and end and start <= partition <= end)


def _later_runs(instance: dg.DagsterInstance, since: float) -> list[dg.RunRecord]:
    """Runs created after `since`: the ones that may have re-evaluated the checks (e.g. run alone)."""
    return list(instance.get_run_records(filters=dg.RunsFilter(created_after=_utc(since)), limit=MAX_LATER_RUNS))


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, tz=dt.UTC)


def blocking_check_statuses(
    instance: dg.DagsterInstance, asset: str, partitions: Sequence[str], check_names: Sequence[str]
) -> dict[str, CheckStatus]:
    """How the blocking checks `check_names` of `asset` judged each partition's latest materialisation:
    per check, the latest evaluation made after it — in the run that materialised it or in a later run
    of the checks for that partition. An evaluation without a partition (a single-run backfill) counts
    for every day of its run. Each run's events are read once, also for a long backfill."""
    return blocking_check_statuses_of_assets(instance, {asset: check_names}, partitions)[asset]


def blocking_check_statuses_of_assets(
    instance: dg.DagsterInstance, check_names: Mapping[str, Sequence[str]], partitions: Sequence[str]
) -> dict[str, dict[str, CheckStatus]]:
    """asset -> partition -> `CheckStatus`, by the rule of `blocking_check_statuses`, for several assets
    (`check_names`: asset -> its blocking checks). Each run's check evaluations and the list of later
    runs are read once for all the assets: the daily flow materialises the indicator assets of a day
    in one run."""
    wanted = list(dict.fromkeys(partitions))
    materializations = {asset: latest_materializations(instance, asset, wanted) for asset in check_names}
    timestamps = [record.timestamp for found in materializations.values() for record in found.values()]
    later_run_records = _later_runs(instance, min(timestamps)) if timestamps else []
    later_runs = {}  # asset -> the runs created after its earliest wanted materialisation
    for asset, found in materializations.items():
        since = _utc(min(record.timestamp for record in found.values())) if found else None
        later_runs[asset] = [
            r.dagster_run for r in later_run_records if since is not None and r.create_timestamp > since
        ]
    events: dict[str, dict[dg.AssetKey, list[_Evaluation]]] = {}

    def evaluations(run_id: str, asset: str) -> list[_Evaluation]:
        if run_id not in events:
            events[run_id] = _evaluations_in_run(instance, run_id)
        return events[run_id].get(dg.AssetKey(asset), [])

    return {
        asset: {
            partition: _partition_status(
                asset, partition, materializations[asset].get(partition), names, later_runs[asset], evaluations
            )
            for partition in wanted
        }
        for asset, names in check_names.items()
    }


def _partition_status(
    asset: str,
    partition: str,
    record: dg.EventLogRecord | None,
    check_names: Sequence[str],
    later_runs: list[dg.DagsterRun],
    evaluations: Callable[[str, str], list[_Evaluation]],
) -> CheckStatus:
    """The status of one partition whose latest materialisation is `record` (None: never materialised)."""
    if record is None:
        return CheckStatus()
    run_ids = [record.run_id] + [r.run_id for r in later_runs if r.run_id != record.run_id and _covers(r, partition)]
    latest: dict[str, _Evaluation] = {}
    for run_id in run_ids:
        for found in evaluations(run_id, asset):
            evaluation = found.evaluation
            if (
                evaluation.check_name in check_names
                and evaluation.partition in (None, partition)
                and found.timestamp >= record.timestamp
                and (evaluation.check_name not in latest or found.timestamp >= latest[evaluation.check_name].timestamp)
            ):
                latest[evaluation.check_name] = found
    failures, unchecked = [], []
    for name in check_names:
        found = latest.get(name)
        if found is None:
            unchecked.append(f"{asset}:{name}")
        elif not found.evaluation.passed and found.evaluation.severity == dg.AssetCheckSeverity.ERROR:
            description = found.evaluation.description
            detail = f" — {description[:300]}" if description else ""
            failures.append(f"{asset}:{name} failed (run {found.run_id[:8] or 'runless'}){detail}")
    return CheckStatus(failures, unchecked, record.run_id, materialized=True)


def blocking_check_status(
    instance: dg.DagsterInstance, asset: str, partition: str, check_names: Sequence[str]
) -> CheckStatus:
    return blocking_check_statuses(instance, asset, [partition], check_names)[partition]


ACTIVE_OR_DONE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.SUCCESS,
]


def run_in_flight_or_done(instance: dg.DagsterInstance, job_name: str, partition: str) -> bool:
    """A run of `job_name` for `partition` is queued, running or succeeded (so don't launch another)."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, tags={"dagster/partition": partition}, statuses=ACTIVE_OR_DONE),
        limit=1,
    )
    return bool(records)


def check_names_of(checks: Iterable[dg.AssetChecksDefinition], asset: str) -> list[str]:
    """The names of the blocking checks among `checks` that target `asset`."""
    names = []
    for definition in checks:
        for spec in definition.check_specs:
            if spec.asset_key == dg.AssetKey(asset) and spec.blocking:
                names.append(spec.name)
    return names
