"""CLEANUP_OLD_SIGNALS runs on Sunday night, when no trading-day stage does."""

import dagster as dg

from qrl_platform.calendar import TAIPEI_NAME
from qrl_platform.defs.maintenance.jobs import cleanup_old_signals_job

cleanup_old_signals_schedule = dg.ScheduleDefinition(
    name="cleanup_old_signals_schedule",
    job=cleanup_old_signals_job,
    cron_schedule="0 3 * * 0",
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 03:00: CLEANUP_OLD_SIGNALS.",
)
