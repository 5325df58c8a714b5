"""NOTIFY_M13_SIGNALS (seed JOB-M11-002) as an asset: one STRATEGY_SIGNALS_READY event per trading day."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.calendar import day_status
from qrl_platform.defs.daily_flow.conditions import NOTIFICATION_CONDITION
from qrl_platform.defs.outages import naming_outages
from qrl_platform.defs.partitions import partition_dates, trading_day
from qrl_platform.defs.resources import EventBusResource, WarehouseResource
from qrl_platform.notify.summary import unconsumed_signal_summary


class NotifyConfig(dg.Config):
    force: bool = False  # publish again even if the day's event exists (re-notify the order module)


@dg.asset(
    group_name="notify",
    partitions_def=trading_day,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=["strategy_signals"],
    automation_condition=NOTIFICATION_CONDITION,
    description="M13: the STRATEGY_SIGNALS_READY event for the day, published once per trading day when it has "
    "unconsumed signals (outbox table by default, Redis Stream with QRL_EVENT_BUS=redis).",
    kinds={"redis", "sql"},
    tags={"module": "M13"},
)
def m13_notification(
    context: dg.AssetExecutionContext,
    config: NotifyConfig,
    warehouse: WarehouseResource,
    event_bus: EventBusResource,
) -> dg.MaterializeResult:
    wh = warehouse.get()
    published, skipped = [], {}
    last_summary: dict = {}
    # The days' outcomes go to the run's log as one message (a year's range run would otherwise write
    # 265 log events).
    outcomes: list[str] = []
    for date in partition_dates(context):
        status = day_status(date)
        if not status.is_open:
            skipped[date.isoformat()] = f"market closed: {status.reason}"
            continue
        with naming_outages(f"reading the signals of {date}", warehouse_url=wh.url):
            summary = unconsumed_signal_summary(wh, date)
        last_summary = summary
        if summary["total_signals"] == 0:
            skipped[date.isoformat()] = "no unconsumed signals"
            continue
        with naming_outages(f"publishing STRATEGY_SIGNALS_READY for {date}", warehouse_url=wh.url):
            result = event_bus.publish_signals_ready(wh, date, summary, force=config.force)
        if result.relay_error:
            context.log.warning(f"{date}: event kept in the outbox, not yet on the stream: {result.relay_error}")
        outcomes.append(
            f"{date}: {'published' if result.created else 'already published'} event {result.event.event_id}"
        )
        published.append(
            {
                "date": date.isoformat(),
                "event_id": result.event.event_id,
                "new": result.created,
                "stream_id": result.stream_id,
                **summary,
            }
        )
    if outcomes:
        context.log.info("\n".join(outcomes))
    metadata = {
        "dagster/row_count": len(published),
        "events_published": sum(1 for p in published if p["new"]),
        "events_already_published": sum(1 for p in published if not p["new"]),
        **{f"bus_{k}": v for k, v in event_bus.env_summary().items()},
    }
    if len(published) == 1:
        metadata.update({k: v for k, v in published[0].items() if k != "date" and v is not None})
    elif last_summary and not published:
        metadata.update(last_summary)
    if skipped:
        metadata["skipped"] = "\n".join(f"{d}: {why}" for d, why in sorted(skipped.items()))
    return dg.MaterializeResult(metadata=metadata)


NOTIFY_ASSETS = [m13_notification]
