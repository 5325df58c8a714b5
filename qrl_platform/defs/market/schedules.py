"""When the slower-cadence raw tables are ingested: monthly revenue, quarterly financials, the
weekly TDCC shareholding distribution. Each skips, with its reason, when the configured source does not
provide the table, instead of failing every period and counting toward the 3-failures pause."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg

from qrl_platform.calendar import TAIPEI, TAIPEI_NAME
from qrl_platform.defs.market import jobs
from qrl_platform.defs.resources import MarketSourceResource

TZ = TAIPEI


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
    execution_timezone=TAIPEI_NAME,
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
    execution_timezone=TAIPEI_NAME,
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
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Saturday 10:00: archive the TDCC shareholding distribution of Friday (TDCC keeps only the latest week).",
)
def shareholding_schedule(context: dg.ScheduleEvaluationContext, market_source: MarketSourceResource):
    friday = context.scheduled_execution_time.astimezone(TZ).date() - dt.timedelta(days=1)
    return _unless_not_provided(market_source, "shareholding_distribution") or dg.RunRequest(
        run_key=f"shareholding:{friday}", partition_key=friday.isoformat()
    )
