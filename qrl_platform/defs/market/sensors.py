"""Ingest each raw daily table as soon as it is published, and each indicator once its inputs are stored.

Every tick (10 minutes) looks at today and the previous trading day (a table published late in the
evening, or later than usual, is still picked up after midnight) and, per open day:

* each raw table partitioned by trading day (`RAW_DAILY`, from qrl_platform/market/tables.py) whose
  publication time has passed (`timetable.is_due`, QRL_PUBLISH_<TABLE>) and that is neither materialised nor being
  ingested gets its own run of `ingest_<table>_job`; a table that is not due is a wait, with the time
  it is due, in the SkipReason — no request is sent to the exchange before then;
* each indicator whose inputs for the day are materialised gets its own run: technical needs
  daily_quotes of D, fundamental daily_quotes and valuations of D, chip daily_quotes and
  institutional_flows of D and margin_balances of the trading day before D (the margin lag: D's margin
  is out ~21:00 and feeds D+1, `compute_range._chip`).

Why the timetable and not a request: the timetable costs nothing and is what the exchanges promise.
When a table is due but the exchange is late anyway, the raw asset meets `NotPublishedYet` and ends
its run green *without* a materialisation (defs/market/assets.py): a failed run would alert and count
toward the 3-failures pause for data that is merely late. The next tick sees "run succeeded, still
not materialised" and asks again with the next attempt's run key (`<job>:<day>:<attempt>`), so there is
never more than one run per table and day in flight and never a second run once it is materialised.
A run that *failed* (bad data, exchange down after its retries) is not retried by the sensor: it is
reported by the failure sensor and re-executed by a person or the 16:00 backstop.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

import dagster as dg

from qrl_platform.calendar import TAIPEI, day_status, previous_trading_days
from qrl_platform.defs import clock
from qrl_platform.defs.gating import is_materialized
from qrl_platform.defs.job_tags import RAW_DAILY
from qrl_platform.defs.market.jobs import INDICATOR_JOBS, TABLE_JOBS
from qrl_platform.defs.resources import MarketSourceResource
from qrl_platform.factors import compute_range as ranges
from qrl_platform.market import timetable

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def indicator_inputs(asset: str, day: dt.date) -> list[tuple[str, dt.date]]:
    """The (raw table, partition day) an indicator of `day` cannot be computed without (from its
    family's factor declarations: `compute_range.inputs_of_day`)."""
    return ranges.inputs_of_day(asset, day)


def days_to_watch(now: dt.datetime) -> list[dt.date]:
    """The previous trading day and today (when open), oldest first."""
    today = now.astimezone(TAIPEI).date()
    days = previous_trading_days(today - dt.timedelta(days=1), 1)
    return days + ([today] if day_status(today).is_open else [])


@dataclass
class Plan:
    requests: list[dg.RunRequest] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


def _runs(instance: dg.DagsterInstance, job_name: str, partition: str) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=job_name, tags={"dagster/partition": partition})))


def _request_once(
    instance: dg.DagsterInstance, plan: Plan, asset: str, job_name: str, day: dt.date, trigger: str
) -> None:
    """One run for (asset, day) unless it is materialised, in flight, or its last run failed."""
    partition = day.isoformat()
    if is_materialized(instance, asset, partition):
        return
    runs = _runs(instance, job_name, partition)  # newest first
    if runs and runs[0].status in IN_FLIGHT:
        plan.waiting.append(f"{asset} {partition}: run {runs[0].run_id[:8]} in flight")
        return
    if runs and runs[0].status != dg.DagsterRunStatus.SUCCESS:
        plan.waiting.append(f"{asset} {partition}: last run {runs[0].run_id[:8]} {runs[0].status.value}; not retried")
        return
    # No run yet, or the last one succeeded without a materialisation (the exchange was late): ask again.
    plan.requests.append(
        dg.RunRequest(
            run_key=f"{job_name}:{partition}:{len(runs) + 1}",
            job_name=job_name,
            partition_key=partition,
            tags={"qrl/trigger": trigger},
        )
    )


def plan_market_runs(
    instance: dg.DagsterInstance, now: dt.datetime, publication_times: Mapping[str, dt.time] | None = None
) -> Plan:
    plan = Plan()
    for day in days_to_watch(now):
        for table in RAW_DAILY:
            if is_materialized(instance, table, day.isoformat()):
                continue
            due, reason = timetable.is_due(table, day, now, publication_times)
            if not due:
                plan.waiting.append(reason)
                continue
            _request_once(instance, plan, table, TABLE_JOBS[table].name, day, "published")
        for asset, job in INDICATOR_JOBS.items():
            missing = [
                f"{table} {when}"
                for table, when in indicator_inputs(asset, day)
                if not is_materialized(instance, table, when.isoformat())
            ]
            if missing:
                if not is_materialized(instance, asset, day.isoformat()):
                    plan.waiting.append(f"{asset} {day}: waits for {', '.join(missing)}")
                continue
            _request_once(instance, plan, asset, job.name, day, "inputs-stored")
    return plan


@dg.sensor(
    jobs=[*TABLE_JOBS.values(), *INDICATOR_JOBS.values()],
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 10 minutes, today and the previous trading day: ingests each raw daily table once the "
    "publication timetable says it is out (QRL_PUBLISH_<TABLE>), and computes each indicator asset once its inputs "
    "are stored. Late data is a skip with its reason, never a failed run.",
)
def market_data_available_sensor(context: dg.SensorEvaluationContext, market_source: MarketSourceResource):
    now = clock.current_time().astimezone(TAIPEI)
    today = now.date()
    status = day_status(today)
    plan = plan_market_runs(context.instance, now, market_source.settings().publication_times)
    if plan.requests:
        return plan.requests
    if not status.is_open and not plan.waiting:
        return dg.SkipReason(f"{today}: market closed ({status.reason}); nothing left to ingest")
    closed = "" if status.is_open else f"{today}: market closed ({status.reason}). "
    return dg.SkipReason(closed + ("; ".join(plan.waiting) or "everything is ingested"))
