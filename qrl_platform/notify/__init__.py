"""The order module's notification: the STRATEGY_SIGNALS_READY event, in three rooms without Dagster imports:

* `outbox` — the event as a warehouse row (idempotent per day), and its acknowledgement;
* `relay` — the Redis Stream it is relayed to on the production backend, and publishing;
* `lag` — which events the order module has not consumed in time.

How the order module consumes and acknowledges is shown by `qrl_platform_tests/notify/m13_consumer.py`.
"""

from qrl_platform.notify.lag import LaggingEvent, unconsumed_events
from qrl_platform.notify.outbox import (
    STRATEGY_SIGNALS_READY,
    EventBusError,
    OutboxEvent,
    build_signals_ready_payload,
    mark_consumed,
    record_event,
    record_signals_ready,
)
from qrl_platform.notify.relay import (
    M13_GROUP,
    STREAM_KEY,
    STREAM_MAXLEN,
    PublishResult,
    RelayedEvent,
    ensure_consumer_group,
    publish_signals_ready,
    relay_pending,
)

__all__ = [
    "M13_GROUP",
    "STRATEGY_SIGNALS_READY",
    "STREAM_KEY",
    "STREAM_MAXLEN",
    "EventBusError",
    "LaggingEvent",
    "OutboxEvent",
    "PublishResult",
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
