"""Sensors of the daily flow: data availability, late-upstream catch-up, and the M13 bus (S7, S9)."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt

import dagster as dg

from qrl_platform.notify.event_bus import EventBusError
from qrl_platform.orchestration import jobs
from qrl_platform.orchestration.readiness import is_materialized, run_in_flight_or_done
from qrl_platform.orchestration.schedules import DAILY_STAGES, TZ, stage_gate
from qrl_platform.partitions import day_status
from qrl_platform.resources.alerts import AlertsResource
from qrl_platform.resources.event_bus import EventBusResource
from qrl_platform.resources.market import MarketSourceResource
from qrl_platform.resources.redis import RedisResource
from qrl_platform.resources.warehouse import WarehouseResource

CLOSING_DATA_FROM = dt.time(14, 30)  # TWSE/TPEx publish the day's closing data after the 13:30 close


def current_time() -> dt.datetime:
    """The clock the sensors read (tests replace it to evaluate a sensor at 16:40 on a given day)."""
    return dt.datetime.now(TZ)


@dg.sensor(
    job=jobs.daily_market_job,
    minimum_interval_seconds=600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="From 14:30 on trading days, asks the market source every 10 minutes whether today's closing data "
    "is published and materialises the raw assets and M07/M08/M09 as soon as it is (before the 16:00 schedule).",
)
def market_data_available_sensor(context: dg.SensorEvaluationContext, market_source: MarketSourceResource):
    now = current_time().astimezone(TZ)
    today = now.date()
    status = day_status(today)
    if not status.is_open:
        return dg.SkipReason(f"{today}: market closed ({status.reason})")
    if now.time() < CLOSING_DATA_FROM:
        return dg.SkipReason(f"{today}: closing data is not published before {CLOSING_DATA_FROM:%H:%M}")
    partition = today.isoformat()
    if is_materialized(context.instance, "daily_quotes", partition) or run_in_flight_or_done(
        context.instance, jobs.daily_market_job.name, partition
    ):
        return dg.SkipReason(f"{today}: already ingested or ingesting")
    if not market_source.get().has_data(today):
        return dg.SkipReason(f"{today}: the {market_source.settings().source} source has no data yet")
    return dg.RunRequest(run_key=f"{jobs.daily_market_job.name}:{today}", partition_key=partition,
                         tags={"qrl/trigger": "data-available"})


@dg.sensor(
    jobs=[stage.job for stage in DAILY_STAGES[1:]],
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches strategies / M13 notification / stats for today as soon as their upstream is ready when "
    "it was not at the scheduled time (late data), never before the stage's time and never twice.",
)
def daily_flow_catchup_sensor(context: dg.SensorEvaluationContext):
    now = current_time().astimezone(TZ)
    requests, waiting = [], []
    for stage in DAILY_STAGES[1:]:
        if now.time() < stage.at:
            continue
        gate = stage_gate(context.instance, stage, now.date())
        if gate.ready:
            requests.append(dg.RunRequest(
                run_key=f"{stage.job.name}:{now.date()}:catch-up", job_name=stage.job.name,
                partition_key=now.date().isoformat(), tags={"qrl/trigger": "catch-up"},
            ))
        else:
            waiting.append(f"{stage.job.name}: {gate.reason}")
    if requests:
        return requests
    return dg.SkipReason("; ".join(waiting) or f"before {DAILY_STAGES[1].at:%H:%M}")


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="WARNING alert when M13 has not consumed a STRATEGY_SIGNALS_READY event 30 minutes after "
    "publication (Redis: undelivered or pending entries; outbox: consumed_at still null). Also relays outbox "
    "events that could not reach Redis at publication time.",
)
def m13_consumption_lag_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    event_bus: EventBusResource,
    redis: RedisResource,
    alerts: AlertsResource,
):
    wh = warehouse.get()
    client = redis.client() if event_bus.resolved_backend() == "redis" else None
    try:
        relayed = event_bus.relay(wh, client)
        lagging = event_bus.unconsumed(wh, client, now=current_time())
    except EventBusError as error:
        # Redis down: the events are safe in the outbox; say so once an hour instead of failing every tick.
        alerts.send("WARNING", "M13 event stream unreachable", str(error), source="m13_consumption_lag_sensor",
                    dedupe_key="m13-stream-unreachable", dedupe_minutes=60)
        return dg.SkipReason(f"event stream unreachable: {error}")
    finally:
        if client is not None:
            client.close()
    for event in lagging:
        alerts.send(
            "WARNING",
            f"M13 has not consumed signals of {event.trade_date}",
            f"Event {event.event_id} ({event.where}) is {event.age_minutes:.0f} minutes old and still unconsumed.",
            source="m13_consumption_lag_sensor",
            dedupe_key=f"m13-lag:{event.event_id}",
            dedupe_minutes=120,
            trade_date=event.trade_date,
        )
    return dg.SkipReason(f"relayed {len(relayed)} event(s); {len(lagging)} lagging beyond 30 minutes")


DAILY_FLOW_SENSORS = [market_data_available_sensor, daily_flow_catchup_sensor, m13_consumption_lag_sensor]
