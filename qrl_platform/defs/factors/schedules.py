"""REFRESH_FACTOR_METADATA every Monday morning, before the week's first trading-day stage."""

import dagster as dg

from qrl_platform.calendar import TAIPEI_NAME
from qrl_platform.defs.factors.jobs import refresh_factor_metadata_job

refresh_factor_metadata_schedule = dg.ScheduleDefinition(
    name="refresh_factor_metadata_schedule",
    job=refresh_factor_metadata_job,
    cron_schedule="0 7 * * 1",  # Monday 07:00 Asia/Taipei
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="REFRESH_FACTOR_METADATA every Monday 07:00 Asia/Taipei.",
)

INDICATOR_SCHEDULES = [refresh_factor_metadata_schedule]
