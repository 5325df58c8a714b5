"""The event relay to the order module: puts outbox events on the Redis Stream ``qrl:events:m13`` (``XADD … MAXLEN ~
10000``), which the order module reads through the consumer group ``m13``, and publishes an event (outbox row, then
relay on the ``redis`` backend).

If Redis is down at publication time the row simply stays unpublished and the next ``relay_pending``
sends it: nothing is lost because the warehouse row is the durable record.

Delivery guarantee: each event reaches the stream once. The relay marks a row published only after
its stream entry exists; if the process dies between the ``XADD`` and the commit of that mark, the
row is relayed again, but the ``XADD`` is idempotent per ``event_id``: a Lua script (atomic in Redis)
adds the entry and records its stream id in the hash ``<stream>:relayed`` (one small field per
event), and a second relay of the same event gets the recorded id back instead of a second entry.
Consumers should still treat ``event_id`` as the idempotency key (a consumer can die between
handling an entry and acknowledging it). Rows already consumed are never relayed again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
import sqlalchemy as sa

from qrl_platform.notify.outbox import (
    EventBusError,
    OutboxEvent,
    aware_now,
    get_event,
    record_signals_ready,
)
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import event_outbox

log = logging.getLogger(__name__)

BACKENDS = ("outbox", "redis")
DEFAULT_BACKEND = "outbox"
STREAM_KEY = "qrl:events:m13"
STREAM_MAXLEN = 10_000
M13_GROUP = "m13"


# --------------------------------------------------------------------------------------------------
# Redis relay


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ensure_consumer_group(redis: redis_lib.Redis, stream: str = STREAM_KEY, group: str = M13_GROUP) -> None:
    """XGROUP CREATE <stream> m13 0 MKSTREAM, tolerating an existing group. The group starts at id 0
    so events relayed before the order module first connected are still delivered to it."""
    try:
        redis.xgroup_create(stream, group, id="0", mkstream=True)
    except redis_lib.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


@dataclass(frozen=True)
class RelayedEvent:
    event_id: str
    trade_date: dt.date | None
    stream_id: str


# KEYS[1] the stream, KEYS[2] the hash event_id -> stream id; ARGV[1] event_id, ARGV[2] MAXLEN, then the
# entry's field/value pairs. Atomic in Redis: the entry and its record exist together or not at all.
_XADD_ONCE = """
local existing = redis.call('HGET', KEYS[2], ARGV[1])
if existing then return existing end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
redis.call('HSET', KEYS[2], ARGV[1], id)
return id
"""


def relayed_key(stream: str) -> str:
    return f"{stream}:relayed"


def xadd_once(redis: redis_lib.Redis, stream: str, fields: Mapping[str, str], *, maxlen: int = STREAM_MAXLEN) -> str:
    """XADD the event unless this event_id was added before; the stream id either way.

    A relay killed after its XADD but before the outbox commit sends the event again: without this,
    the stream would hold it twice.
    """
    pairs = [item for name, value in fields.items() for item in (name, value)]
    script = redis.register_script(_XADD_ONCE)
    return as_text(script(keys=[stream, relayed_key(stream)], args=[fields["event_id"], maxlen, *pairs]))


def relay_pending(
    warehouse: Warehouse,
    redis: redis_lib.Redis,
    *,
    stream: str = STREAM_KEY,
    maxlen: int = STREAM_MAXLEN,
    now: dt.datetime | None = None,
) -> list[RelayedEvent]:
    """Send every unpublished, unconsumed outbox row to the stream (oldest first) and mark it.

    Each row is handled in its own transaction: claim it (``UPDATE … WHERE published_at IS NULL``,
    which also makes a concurrent relay skip it), ``XADD``, record the stream id, commit. If Redis
    fails, that transaction rolls back — the row stays unpublished — and ``EventBusError`` is raised
    after the rows already sent are committed.
    """
    published_at = aware_now(now).astimezone(dt.UTC)
    with warehouse.begin() as connection:
        candidates = (
            connection.execute(
                sa.select(event_outbox.c.event_id)
                .where(event_outbox.c.published_at.is_(None), event_outbox.c.consumed_at.is_(None))
                .order_by(event_outbox.c.created_at, event_outbox.c.event_id)
            )
            .scalars()
            .all()
        )
    if not candidates:
        return []
    try:
        ensure_consumer_group(redis, stream)
    except redis_lib.RedisError as error:
        raise EventBusError(
            f"Redis unavailable, {len(candidates)} event(s) stay in event_outbox for the next relay: {error}"
        ) from error

    relayed: list[RelayedEvent] = []
    for event_id in candidates:
        try:
            with warehouse.begin() as connection:
                claimed = connection.execute(
                    event_outbox.update()
                    .where(
                        event_outbox.c.event_id == event_id,
                        event_outbox.c.published_at.is_(None),
                        event_outbox.c.consumed_at.is_(None),
                    )
                    .values(published_at=published_at)
                )
                if claimed.rowcount != 1:
                    continue  # another relay (or a consumer) got there first
                row = connection.execute(sa.select(event_outbox).where(event_outbox.c.event_id == event_id)).one()
                fields = {
                    "event_id": row.event_id,
                    "event_type": row.event_type,
                    "trade_date": row.trade_date.isoformat() if row.trade_date else "",
                    "payload": row.payload,
                }
                stream_id = xadd_once(redis, stream, fields, maxlen=maxlen)
                connection.execute(
                    event_outbox.update().where(event_outbox.c.event_id == event_id).values(stream_id=stream_id)
                )
        except redis_lib.RedisError as error:
            raise EventBusError(
                f"Redis unavailable while relaying event {event_id}: it and any later events stay in "
                f"event_outbox for the next relay ({len(relayed)} relayed before the failure): {error}"
            ) from error
        relayed.append(RelayedEvent(event_id=row.event_id, trade_date=row.trade_date, stream_id=stream_id))
        log.info("relayed event %s (%s) to %s as %s", row.event_id, row.dedupe_key, stream, stream_id)
    return relayed


def stream_entries(entries: Any) -> list[tuple[str, dict[str, str]]]:
    """XRANGE-shaped answers as (id, fields); fields are empty for an entry deleted while pending."""
    return [
        (as_text(entry_id), {as_text(k): as_text(v) for k, v in (fields or {}).items()})
        for entry_id, fields in entries or []
    ]


# --------------------------------------------------------------------------------------------------
# Publishing


def resolve_backend(backend: str | None = None) -> str:
    """The backend name (the wiring passes QRL_EVENT_BUS), else 'outbox'."""
    name = (backend or DEFAULT_BACKEND).strip().lower()
    if name not in BACKENDS:
        raise EventBusError(f"unknown event bus backend {name!r} (QRL_EVENT_BUS): choose one of {', '.join(BACKENDS)}")
    return name


@dataclass(frozen=True)
class PublishResult:
    backend: str
    event: OutboxEvent
    relayed: list[RelayedEvent] = field(default_factory=list)
    relay_error: str | None = None  # Redis was unreachable: the event waits in the outbox

    @property
    def created(self) -> bool:
        return self.event.is_new

    @property
    def stream_id(self) -> str | None:
        for item in self.relayed:
            if item.event_id == self.event.event_id:
                return item.stream_id
        return self.event.stream_id


def publish_signals_ready(
    warehouse: Warehouse,
    trade_date: dt.date | str,
    summary: Mapping[str, int],
    *,
    backend: str = DEFAULT_BACKEND,
    redis: redis_lib.Redis | None = None,
    force: bool = False,
    now: dt.datetime | None = None,
    stream: str = STREAM_KEY,
    maxlen: int = STREAM_MAXLEN,
) -> PublishResult:
    """Record STRATEGY_SIGNALS_READY for ``trade_date`` and, on the Redis backend, relay it.

    A Redis outage does not raise: the event is durable in the outbox, ``relay_error`` says why it is
    not on the stream yet, and the next ``relay_pending`` (or re-publication) sends it. Re-publishing
    an existing event also relays anything still pending, so re-running the notification after an
    outage is the natural fix.
    """
    backend = resolve_backend(backend)
    if backend == "redis" and redis is None:
        raise EventBusError("the redis event bus backend needs a Redis client (set QRL_REDIS_URL)")
    with warehouse.begin() as connection:
        event = record_signals_ready(connection, trade_date, summary, force=force, now=now)
    if backend == "outbox":
        return PublishResult(backend=backend, event=event)
    try:
        relayed = relay_pending(warehouse, redis, stream=stream, maxlen=maxlen, now=now)
    except EventBusError as error:
        log.warning("event %s kept in event_outbox: %s", event.event_id, error)
        return PublishResult(backend=backend, event=event, relay_error=str(error))
    refreshed = get_event(warehouse, event.event_id)  # now carries published_at / stream_id
    event = dataclasses.replace(refreshed, is_new=event.is_new) if refreshed else event
    return PublishResult(backend=backend, event=event, relayed=relayed)
