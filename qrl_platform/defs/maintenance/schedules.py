"""The weekly maintenance runs on Sunday night, when no trading-day stage does."""

import dagster as dg

from qrl_platform.calendar import TAIPEI_NAME
from qrl_platform.defs.maintenance.dagster_retention import dagster_retention_job
from qrl_platform.defs.maintenance.jobs import cleanup_old_signals_job

cleanup_old_signals_schedule = dg.ScheduleDefinition(
    name="cleanup_old_signals_schedule",
    job=cleanup_old_signals_job,
    cron_schedule="0 3 * * 0",
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 03:00: CLEANUP_OLD_SIGNALS.",
)

dagster_retention_schedule = dg.ScheduleDefinition(
    name="dagster_retention_schedule",
    job=dagster_retention_job,
    # After the warehouse cleanup, so the two never write at once on a small SQLite instance.
    cron_schedule="30 3 * * 0",
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Sunday 03:30: DAGSTER_RETENTION (old runs of Dagster's own storage).",
)
