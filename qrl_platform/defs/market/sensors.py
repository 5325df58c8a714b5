"""Ingest the day as soon as the source has it (before the 16:00 schedule)."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.calendar import CLOSING_DATA_OUT, TAIPEI, closing_data_out, day_status
from qrl_platform.defs import clock
from qrl_platform.defs.gating import is_materialized, run_in_flight_or_done
from qrl_platform.defs.market.jobs import daily_market_job
from qrl_platform.defs.resources import MarketSourceResource


@dg.sensor(
    job=daily_market_job,
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="From 14:30 on trading days, asks the market source every 10 minutes whether today's closing data "
    "is published and materialises the raw assets and M07/M08/M09 as soon as it is (before the 16:00 schedule).",
)
def market_data_available_sensor(context: dg.SensorEvaluationContext, market_source: MarketSourceResource):
    now = clock.current_time().astimezone(TAIPEI)
    today = now.date()
    status = day_status(today)
    if not status.is_open:
        return dg.SkipReason(f"{today}: market closed ({status.reason})")
    if not closing_data_out(now):
        return dg.SkipReason(f"{today}: closing data is not published before {CLOSING_DATA_OUT:%H:%M}")
    partition = today.isoformat()
    if is_materialized(context.instance, "daily_quotes", partition) or run_in_flight_or_done(
        context.instance, daily_market_job.name, partition
    ):
        return dg.SkipReason(f"{today}: already ingested or ingesting")
    if not market_source.get().has_data(today):
        return dg.SkipReason(f"{today}: the {market_source.settings().source} source has no data yet")
    return dg.RunRequest(
        run_key=f"{daily_market_job.name}:{today}", partition_key=partition, tags={"qrl/trigger": "data-available"}
    )
