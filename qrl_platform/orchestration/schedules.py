"""The daily flow's clock (S9, Asia/Taipei) and the gate each stage waits for.

Each stage of the trading day has a schedule at its time; when it fires, it launches the stage for
today's partition only if the market is open, the stage has not run for the day, and its upstream is
materialised (strategies: M07/M08/M09 with their blocking checks passed). When the upstream is late,
the catch-up sensor (sensors.py) launches the stage as soon as the gate opens — so nothing waits for
the next day, and nothing runs twice.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from qrl_platform.orchestration import jobs
from qrl_platform.orchestration.readiness import Readiness, run_in_flight_or_done, upstream_ready
from qrl_platform.partitions import TAIPEI, day_status
from qrl_platform.resources.market import MarketSourceResource

TZ = ZoneInfo(TAIPEI)


@dataclass(frozen=True)
class Stage:
    """One step of the trading day: its job, its time, and what must be done before it."""

    job: Any  # an asset job from orchestration.jobs
    at: dt.time
    upstream: tuple[str, ...] = ()
    gate_on_upstream_checks: bool = False

    @property
    def name(self) -> str:
        return self.job.name.removesuffix("_job")

    @property
    def cron(self) -> str:
        return f"{self.at.minute} {self.at.hour} * * 1-5"


def indicator_check_keys() -> list[dg.AssetCheckKey]:
    from qrl_platform.indicators import INDICATOR_CHECKS

    return [key for checks in INDICATOR_CHECKS for key in checks.check_keys]


DAILY_STAGES = (
    Stage(jobs.daily_market_job, dt.time(16, 0)),
    Stage(jobs.strategies_job, dt.time(16, 35), tuple(jobs.INDICATORS), gate_on_upstream_checks=True),
    Stage(jobs.notify_m13_job, dt.time(16, 45), ("strategy_signals",)),
    Stage(jobs.strategy_stats_job, dt.time(17, 0), ("strategy_signals",)),
)


def stage_gate(instance: dg.DagsterInstance, stage: Stage, date: dt.date) -> Readiness:
    """Why `stage` must not run for `date` now (or Readiness(True))."""
    status = day_status(date)
    if not status.is_open:
        return Readiness(False, f"{date}: market closed ({status.reason})")
    partition = date.isoformat()
    if run_in_flight_or_done(instance, stage.job.name, partition):
        return Readiness(False, f"{date}: {stage.job.name} already ran or is running")
    checks = indicator_check_keys() if stage.gate_on_upstream_checks else ()
    return upstream_ready(instance, stage.upstream, partition, checks)


def _daily_schedule(stage: Stage) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{stage.name}_schedule",
        job=stage.job,
        cron_schedule=stage.cron,
        execution_timezone=TAIPEI,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"{stage.at:%H:%M} Asia/Taipei on trading days: {stage.job.description}",
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        date = context.scheduled_execution_time.astimezone(TZ).date()
        gate = stage_gate(context.instance, stage, date)
        if not gate.ready:
            return dg.SkipReason(gate.reason)
        return dg.RunRequest(run_key=f"{stage.job.name}:{date}", partition_key=date.isoformat())

    return _schedule


DAILY_SCHEDULES = [_daily_schedule(stage) for stage in DAILY_STAGES]


def _unless_not_provided(market_source: MarketSourceResource, table: str) -> dg.SkipReason | None:
    """A skip (not a failing run every period) when the configured source cannot ingest `table`."""
    if table in market_source.provided_tables():
        return None
    source = market_source.settings().source
    return dg.SkipReason(f"{table}: the {source} market source does not provide this table; nothing to ingest")


def _previous_month_key(context: dg.ScheduleEvaluationContext) -> str:
    today = context.scheduled_execution_time.astimezone(TZ).date()
    last_month = today.replace(day=1) - dt.timedelta(days=1)
    return last_month.replace(day=1).isoformat()


@dg.schedule(
    job=jobs.monthly_revenue_job,
    cron_schedule="0 8 11 * *",
    execution_timezone=TAIPEI,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The 11th at 08:00: last month's revenue (companies publish by the 10th).",
)
def monthly_revenue_schedule(context: dg.ScheduleEvaluationContext, market_source: MarketSourceResource):
    key = _previous_month_key(context)
    return _unless_not_provided(market_source, "monthly_revenue") or dg.RunRequest(
        run_key=f"monthly_revenue:{key}", partition_key=key
    )


# The day after each statutory deadline: Q4 (Mar 31) → Apr 1, Q1 → May 16, Q2 → Aug 15, Q3 → Nov 15.
_QUARTER_AFTER_DEADLINE = {(4, 1): (-1, 10), (5, 16): (0, 1), (8, 15): (0, 4), (11, 15): (0, 7)}


@dg.schedule(
    job=jobs.financials_job,
    cron_schedule=["0 8 1 4 *", "0 8 16 5 *", "0 8 15 8 *", "0 8 15 11 *"],
    execution_timezone=TAIPEI,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The day after each statutory filing deadline (Mar 31, May 15, Aug 14, Nov 14): that quarter's results.",
)
def financials_schedule(context: dg.ScheduleEvaluationContext, market_source: MarketSourceResource):
    skip = _unless_not_provided(market_source, "financials")
    if skip:
        return skip
    today = context.scheduled_execution_time.astimezone(TZ).date()
    year_offset, quarter_month = _QUARTER_AFTER_DEADLINE[(today.month, today.day)]
    key = dt.date(today.year + year_offset, quarter_month, 1).isoformat()
    return dg.RunRequest(run_key=f"financials:{key}", partition_key=key)


@dg.schedule(
    job=jobs.shareholding_job,
    cron_schedule="0 10 * * 6",
    execution_timezone=TAIPEI,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Saturday 10:00: archive the TDCC shareholding distribution of Friday (TDCC keeps only the latest week).",
)
def shareholding_schedule(context: dg.ScheduleEvaluationContext, market_source: MarketSourceResource):
    friday = context.scheduled_execution_time.astimezone(TZ).date() - dt.timedelta(days=1)
    return _unless_not_provided(market_source, "shareholding_distribution") or dg.RunRequest(
        run_key=f"shareholding:{friday}", partition_key=friday.isoformat()
    )


cleanup_old_signals_schedule = dg.ScheduleDefinition(
    name="cleanup_old_signals_schedule",
    job=jobs.cleanup_old_signals_job,
    cron_schedule="0 3 * * 0",
    execution_timezone=TAIPEI,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 03:00: CLEANUP_OLD_SIGNALS.",
)

ALL_SCHEDULES = [
    *DAILY_SCHEDULES,
    monthly_revenue_schedule,
    financials_schedule,
    shareholding_schedule,
    cleanup_old_signals_schedule,
]
