"""When the slower-cadence raw tables are ingested: one schedule per monthly, quarterly or weekly table
(monthly revenue, quarterly financials, the weekly TDCC shareholding distribution), built from its
declaration. Its cron, the partition each run ingests and its description follow from the table's
publication rule (`timetable.SCHEDULED_RULES`); its names come from the declaration's `OwnSchedule`.
Each skips, with its reason, when the configured source does not provide the table, instead of failing
every period and counting toward the 3-failures pause."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

from collections.abc import Mapping

import dagster as dg

from qrl_platform.calendar import TAIPEI, TAIPEI_NAME
from qrl_platform.defs.market import jobs
from qrl_platform.defs.resources import MarketSourceResource
from qrl_platform.market import tables, timetable


def _unless_not_provided(market_source: MarketSourceResource, table: str) -> dg.SkipReason | None:
    """A skip (not a failing run every period) when the configured source cannot ingest `table`."""
    if table in market_source.provided_tables():
        return None
    source = market_source.settings().source
    return dg.SkipReason(f"{table}: the {source} market source does not provide this table; nothing to ingest")


def periodic_schedule(table: tables.RawTable, job) -> dg.ScheduleDefinition:
    """`<stem>_schedule`: on each day the table's rule makes a partition due, ingest that partition."""

    @dg.schedule(
        name=f"{table.schedule.stem}_schedule",
        job=job,
        cron_schedule=timetable.schedule_cron(table),
        execution_timezone=TAIPEI_NAME,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=timetable.schedule_description(table),
    )
    def _schedule(context: dg.ScheduleEvaluationContext, market_source: MarketSourceResource):
        run_day = context.scheduled_execution_time.astimezone(TAIPEI).date()
        key = timetable.partition_due_on(table, run_day).isoformat()
        return _unless_not_provided(market_source, table.name) or dg.RunRequest(
            run_key=f"{table.schedule.stem}:{key}", partition_key=key
        )

    return _schedule


def periodic_schedules(raw: tuple[tables.RawTable, ...], periodic_jobs: Mapping) -> list[dg.ScheduleDefinition]:
    """The schedule of every slower-cadence table in `raw`, launching its job from `periodic_jobs`."""
    return [periodic_schedule(table, periodic_jobs[table.name]) for table in raw if table.schedule is not None]


# monthly_revenue_schedule, financials_schedule, shareholding_schedule
PERIODIC_SCHEDULES = periodic_schedules(tables.RAW, jobs.PERIODIC_JOBS)
