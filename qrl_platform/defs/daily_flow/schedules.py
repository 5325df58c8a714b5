"""The daily flow's first stage: the market job at 16:00 Asia/Taipei on weekdays (ingest is a cron job).

The tick launches today's partition unless the market is closed (the calendar's reason is the skip
message) or a run of the job for the day is queued, running or succeeded. The later stages
(strategies, the order-module notification, stats) are not scheduled: their assets carry automation
conditions (conditions.py) that the sensors in sensors.py evaluate.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg

from qrl_platform.calendar import TAIPEI, TAIPEI_NAME, day_status
from qrl_platform.defs.gating import run_in_flight_or_done
from qrl_platform.defs.market.jobs import daily_market_job

MARKET_AT = dt.time(16, 0)


@dg.schedule(
    name="daily_market_schedule",
    job=daily_market_job,
    cron_schedule=f"{MARKET_AT.minute} {MARKET_AT.hour} * * 1-5",
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"{MARKET_AT:%H:%M} Asia/Taipei on trading days: {daily_market_job.description}",
)
def daily_market_schedule(context: dg.ScheduleEvaluationContext):
    date = context.scheduled_execution_time.astimezone(TAIPEI).date()
    status = day_status(date)
    if not status.is_open:
        return dg.SkipReason(f"{date}: market closed ({status.reason})")
    if run_in_flight_or_done(context.instance, daily_market_job.name, date.isoformat()):
        return dg.SkipReason(f"{date}: {daily_market_job.name} already ran or is running")
    return dg.RunRequest(run_key=f"{daily_market_job.name}:{date}", partition_key=date.isoformat())
