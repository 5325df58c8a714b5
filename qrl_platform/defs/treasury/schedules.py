"""When the QRL assets run: every 15 minutes (on by default) and a standalone daily
rebalance (off by default, the source's paused `rebalance-manual` scheduler job)."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.calendar import just_finished_quarter_hour
from qrl_platform.defs.treasury.jobs import qrl_15min_job, qrl_rebalance_job


@dg.schedule(
    job=qrl_15min_job,
    cron_schedule="*/15 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every quarter hour, for the quarter hour that just ended.",
)
def qrl_15min_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = just_finished_quarter_hour(context.scheduled_execution_time)
    return dg.RunRequest(run_key=key, partition_key=key)


@dg.schedule(
    job=qrl_rebalance_job,
    # 00:05 rather than 00:00: when both schedules are on, the 00:00 tick of the 15-minute job has
    # finished the same partition (23:45) by then, so the two never race to place its order.
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Daily standalone rebalance plan for the last finished quarter hour; off by default.",
)
def qrl_rebalance_daily_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    key = just_finished_quarter_hour(context.scheduled_execution_time)
    return dg.RunRequest(run_key=f"daily-{key}", partition_key=key)


QRL_SCHEDULES = [qrl_15min_schedule, qrl_rebalance_daily_schedule]
