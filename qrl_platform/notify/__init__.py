"""M13 notification (S7): the STRATEGY_SIGNALS_READY event bus (outbox / Redis Streams).

The pure code lives in `event_bus` (no Dagster imports); its module docstring says how M13
consumes and acknowledges events.
"""

from qrl_platform.notify.event_bus import (
    M13_GROUP,
    STRATEGY_SIGNALS_READY,
    STREAM_KEY,
    STREAM_MAXLEN,
    EventBusError,
    LaggingEvent,
    M13Consumer,
    OutboxEvent,
    PublishResult,
    ReceivedEvent,
    RelayedEvent,
    build_signals_ready_payload,
    ensure_consumer_group,
    mark_consumed,
    publish_signals_ready,
    record_event,
    record_signals_ready,
    relay_pending,
    unconsumed_events,
)

__all__ = [
    "M13_GROUP",
    "STRATEGY_SIGNALS_READY",
    "STREAM_KEY",
    "STREAM_MAXLEN",
    "EventBusError",
    "LaggingEvent",
    "M13Consumer",
    "OutboxEvent",
    "PublishResult",
    "ReceivedEvent",
    "RelayedEvent",
    "build_signals_ready_payload",
    "ensure_consumer_group",
    "mark_consumed",
    "publish_signals_ready",
    "record_event",
    "record_signals_ready",
    "relay_pending",
    "unconsumed_events",
]
