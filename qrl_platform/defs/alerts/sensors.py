"""Monitoring: job duration against its estimate, run failures, consecutive failures.

* a run that took more than 2× its job's estimate (tag `qrl/estimate_seconds`) → WARNING;
* a failed run → ERROR alert;
* the same job failing 3 times in a row → CRITICAL alert and its schedules are paused (stopped), so a
  broken job stops hammering the exchanges or the warehouse until a person looks at it.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.defs.job_tags import ESTIMATE_TAG, STAGE_TAG
from qrl_platform.defs.resources import AlertsResource

SLOW_FACTOR = 2.0
CONSECUTIVE_FAILURES_TO_PAUSE = 3
WILL_RETRY_TAG = "dagster/will_retry"  # set by Dagster on a failed run it re-launches (run retries)


def step_error_message(error) -> str:
    """The message of a step's final error: past Dagster's wrappers ("Exceeded max_retries", "Error
    occurred while executing op"), the user's exception, e.g. `qrl_platform.defs.outages.ServerUnavailable:
    warehouse postgresql+psycopg://qrl:***@db:5432/qrl unavailable during strategy_signals …`."""
    while error.cause is not None and (
        error.message.startswith("Exceeded max_retries") or error.cls_name == "DagsterExecutionStepExecutionError"
    ):
        error = error.cause
    return error.message.strip()


def run_duration_seconds(instance: dg.DagsterInstance, run_id: str) -> float | None:
    record = instance.get_run_record_by_id(run_id)
    if record is None or record.start_time is None or record.end_time is None:
        return None
    return record.end_time - record.start_time


def consecutive_failures(
    instance: dg.DagsterInstance, job_name: str, limit: int = CONSECUTIVE_FAILURES_TO_PAUSE
) -> int:
    """How many of the job's most recent finished runs failed in a row: runs of the named job, or runs
    the daily flow's automation launched for it (Dagster's asset job, tagged with the stage)."""
    finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
    named = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=finished), limit=limit * 3)
    automated = instance.get_runs(filters=dg.RunsFilter(tags={STAGE_TAG: job_name}, statuses=finished), limit=limit * 3)
    unique = {run.run_id: run for run in [*named, *automated]}
    runs = sorted(
        unique.values(), key=lambda run: instance.get_run_record_by_id(run.run_id).create_timestamp, reverse=True
    )
    count = 0
    for run in runs:  # newest first
        if run.tags.get(WILL_RETRY_TAG) == "true":
            continue  # Dagster re-launches it: the retry's outcome is what counts
        if run.status != dg.DagsterRunStatus.FAILURE:
            break
        count += 1
    return count


def pause_schedules_of_job(
    instance: dg.DagsterInstance, schedule_names: list[str], sensor_names: tuple[str, ...] = ()
) -> list[str]:
    """Stop the named schedules (and automation sensors) in the instance (the UI shows them as stopped;
    a person restarts them).

    A schedule that is on by default has a stored state once the daemon has ticked it; that state is
    what `DagsterInstance.stop_schedule` flips to stopped."""
    paused = []
    for state in instance.all_instigator_state():
        if not state.is_running:
            continue
        if state.instigator_type.value == "SCHEDULE" and state.instigator_name in schedule_names:
            instance.stop_schedule(state.instigator_origin_id, state.selector_id, None)
            paused.append(state.instigator_name)
        elif state.instigator_type.value == "SENSOR" and state.instigator_name in sensor_names:
            instance.stop_sensor(state.instigator_origin_id, state.selector_id, None)
            paused.append(state.instigator_name)
    return paused


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="ERROR alert on every failed run; CRITICAL alert and pause of the job's schedules after 3 "
    "consecutive failures of the same job.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "")
    step_errors = [step_error_message(e.step_failure_data.error) for e in context.get_step_failure_events()]
    error = "\n".join(step_errors) or context.failure_event.message or "run failed"
    alerts.send(
        "ERROR",
        f"{run.job_name} failed{' for ' + partition if partition else ''}",
        error,
        source="run_failure_alert_sensor",
        run_id=run.run_id,
    )
    job_name = run.tags.get(STAGE_TAG, run.job_name)  # a stage launched by automation: its named job
    failures = consecutive_failures(context.instance, job_name)
    if failures >= CONSECUTIVE_FAILURES_TO_PAUSE:
        repository = context.repository_def
        schedules = [s.name for s in (repository.schedule_defs if repository else []) if s.job_name == job_name]
        stage_sensors = tuple(
            s.name
            for s in (repository.sensor_defs if repository else [])
            if isinstance(s, dg.AutomationConditionSensorDefinition) and s.run_tags.get(STAGE_TAG) == job_name
        )
        paused = pause_schedules_of_job(context.instance, schedules, stage_sensors)
        alerts.send(
            "CRITICAL",
            f"{job_name} failed {failures} times in a row",
            f"Schedules paused: {', '.join(paused) or 'none running'}. Last error: {error}",
            source="run_failure_alert_sensor",
            dedupe_key=f"consecutive-failures:{job_name}:{run.run_id}",
        )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="WARNING alert when a run took more than 2× its job's estimate (tag qrl/estimate_seconds).",
)
def job_duration_sensor(context: dg.RunStatusSensorContext, alerts: AlertsResource):
    run = context.dagster_run
    estimate = run.tags.get(ESTIMATE_TAG)
    duration = run_duration_seconds(context.instance, run.run_id)
    if not estimate or duration is None:
        return dg.SkipReason(f"{run.job_name}: no estimate or duration")
    if duration > SLOW_FACTOR * float(estimate):
        alerts.send(
            "WARNING",
            f"{run.job_name} is slow",
            f"Run {run.run_id[:8]} took {duration:.0f}s, more than {SLOW_FACTOR:g}× its estimate of {estimate}s.",
            source="job_duration_sensor",
            run_id=run.run_id,
        )
    return None


MONITORING_SENSORS = [run_failure_alert_sensor, job_duration_sensor]
