"""The daily flow's clock (S9, Asia/Taipei) and the gate each stage waits for.

Each stage of the trading day has a schedule at its time; when it fires, it launches the stage for
today's partition only if the market is open, the stage has not run for the day, and its upstream is
materialised with its blocking checks passed (strategies: M07/M08/M09 and their quality checks; M13
notification and stats: strategy_signals and signals_match_executions) — the rule is
`qrl_platform.defs.gating`. When the upstream is late, the catch-up sensor (sensors.py) launches the
stage as soon as the gate opens — so nothing waits for the next day, and nothing runs twice. A skipped
tick carries the reason (the UI shows it on the schedule's and the sensor's tick history).
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dagster as dg

from qrl_platform.calendar import TAIPEI, TAIPEI_NAME, day_status
from qrl_platform.defs.gating import Readiness, check_names_of, run_in_flight_or_done, upstream_ready
from qrl_platform.defs.job_tags import INDICATORS
from qrl_platform.defs.market.jobs import daily_market_job
from qrl_platform.defs.notify.jobs import notify_m13_job
from qrl_platform.defs.strategies.jobs import strategies_job, strategy_stats_job

TZ = TAIPEI


@dataclass(frozen=True)
class Stage:
    """One step of the trading day: its job, its time, and what must be done before it."""

    job: Any  # an asset job of one of the domains
    at: dt.time
    upstream: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.job.name.removesuffix("_job")

    @property
    def cron(self) -> str:
        return f"{self.at.minute} {self.at.hour} * * 1-5"


def indicator_check_keys() -> list[dg.AssetCheckKey]:
    from qrl_platform.defs.indicators.checks import INDICATOR_CHECKS

    return [key for checks in INDICATOR_CHECKS for key in checks.check_keys]


def blocking_checks(upstream: tuple[str, ...]) -> dict[str, list[str]]:
    """Each upstream asset with the names of its blocking checks (from the check definitions)."""
    from qrl_platform.defs.indicators.checks import INDICATOR_CHECKS
    from qrl_platform.defs.strategies.checks import STRATEGY_CHECKS

    return {asset: check_names_of([*INDICATOR_CHECKS, *STRATEGY_CHECKS], asset) for asset in upstream}


DAILY_STAGES = (
    Stage(daily_market_job, dt.time(16, 0)),
    Stage(strategies_job, dt.time(16, 35), tuple(INDICATORS)),
    Stage(notify_m13_job, dt.time(16, 45), ("strategy_signals",)),
    Stage(strategy_stats_job, dt.time(17, 0), ("strategy_signals",)),
)


def stage_gate(instance: dg.DagsterInstance, stage: Stage, date: dt.date) -> Readiness:
    """Why `stage` must not run for `date` now (or Readiness(True))."""
    status = day_status(date)
    if not status.is_open:
        return Readiness(False, f"{date}: market closed ({status.reason})")
    partition = date.isoformat()
    if run_in_flight_or_done(instance, stage.job.name, partition):
        return Readiness(False, f"{date}: {stage.job.name} already ran or is running")
    return upstream_ready(instance, partition, blocking_checks(stage.upstream))


def _daily_schedule(stage: Stage) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=f"{stage.name}_schedule",
        job=stage.job,
        cron_schedule=stage.cron,
        execution_timezone=TAIPEI_NAME,
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
