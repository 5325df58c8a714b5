"""Watch the order module's event bus: warn when the order module has not consumed an event 30 minutes
after publication, and relay outbox events that could not reach Redis at publication time."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.defs import clock
from qrl_platform.defs.resources import AlertsResource, EventBusResource, WarehouseResource
from qrl_platform.notify.outbox import EventBusError


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="WARNING alert when the order module has not consumed a STRATEGY_SIGNALS_READY event 30 minutes after "
    "publication (Redis: undelivered or pending entries; outbox: consumed_at still null). Also relays outbox "
    "events that could not reach Redis at publication time.",
)
def m13_consumption_lag_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    event_bus: EventBusResource,
    alerts: AlertsResource,
):
    wh = warehouse.get()
    try:
        relayed = event_bus.relay(wh)
        lagging = event_bus.unconsumed(wh, now=clock.current_time())
    except EventBusError as error:
        # Redis down: the events are safe in the outbox; say so once an hour instead of failing every tick.
        alerts.send(
            "WARNING",
            "M13 event stream unreachable",
            str(error),
            source="m13_consumption_lag_sensor",
            dedupe_key="m13-stream-unreachable",
            dedupe_minutes=60,
        )
        return dg.SkipReason(f"event stream unreachable: {error}")
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
