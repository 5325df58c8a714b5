"""When the QRL assets run (SPEC S9): every 15 minutes (on by default) and a standalone daily
rebalance (off by default, the source's paused `rebalance-manual` scheduler job)."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg

from qrl_platform.partitions import QUARTER_HOUR_FMT
from qrl_platform.qrl.assets import qrl_position, rebalance_plan

QUARTER = dt.timedelta(minutes=15)

qrl_15min_job = dg.define_asset_job(
    "qrl_15min_job",
    selection=[qrl_position, rebalance_plan],
    description="QRL cost/PnL then the rebalance plan for one quarter hour (S8; the source's 15-min-job).",
    # One MEXC run at a time (deploy/dagster.yaml queue limit) and never longer than a period.
    tags={"qrl/exchange": "mexc", "dagster/max_runtime_seconds": "600", "qrl/estimate_seconds": "30"},
)

qrl_rebalance_job = dg.define_asset_job(
    "qrl_rebalance_job",
    selection=[rebalance_plan],
    description="The rebalance plan alone (the source's standalone /tasks/rebalance/symmetric).",
    tags={"qrl/exchange": "mexc", "dagster/max_runtime_seconds": "600", "qrl/estimate_seconds": "30"},
)


def just_finished_quarter_hour(at: dt.datetime) -> str:
    """The partition whose window ended most recently at `at` (07:45 at 08:00 and at 08:14:59)."""
    at = at.astimezone(dt.UTC)
    floor = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    return (floor - QUARTER).strftime(QUARTER_HOUR_FMT)


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


QRL_JOBS = [qrl_15min_job, qrl_rebalance_job]
QRL_SCHEDULES = [qrl_15min_schedule, qrl_rebalance_daily_schedule]
