"""The order module's consumption lag check: ``unconsumed_events`` lists events the order module has
not consumed ``older_than`` after publication (a sensor warns after 30 minutes), from the outbox and, on the
Redis backend, from the stream and its consumer group's pending list.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import redis as redis_lib
import sqlalchemy as sa

from qrl_platform.notify.outbox import EventBusError, as_utc, aware_now
from qrl_platform.notify.relay import M13_GROUP, STREAM_KEY, STREAM_MAXLEN, as_text, stream_entries
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import event_outbox

DEFAULT_LAG_THRESHOLD = dt.timedelta(minutes=30)


# --------------------------------------------------------------------------------------------------
# Lag


@dataclass(frozen=True)
class LaggingEvent:
    event_id: str
    trade_date: str
    age_minutes: float
    where: str  # outbox | outbox-unrelayed | stream-undelivered | stream-pending
    published_at: dt.datetime  # outbox: created_at; stream: the time in the stream id
    stream_id: str | None = None
    consumer: str | None = None  # stream-pending: the consumer holding it
    times_delivered: int | None = None


def stream_id_time(stream_id: str) -> dt.datetime:
    """Redis stream ids are '<unix ms>-<seq>': the publication time is in the id."""
    return dt.datetime.fromtimestamp(int(stream_id.split("-", 1)[0]) / 1000, dt.UTC)


def _publication_order(item: LaggingEvent) -> tuple:
    # Stream ids share a millisecond for events relayed together; their sequence number breaks the tie.
    sequence = tuple(int(part) for part in item.stream_id.split("-")) if item.stream_id else (0, 0)
    return (item.published_at, sequence)


def _age_minutes(now: dt.datetime, then: dt.datetime) -> float:
    return round((now - then).total_seconds() / 60, 2)


def _stream_event(
    stream_id: str,
    fields: dict[str, str],
    now: dt.datetime,
    where: str,
    *,
    consumer: str | None = None,
    times_delivered: int | None = None,
) -> LaggingEvent:
    """A stream entry as a lagging event; a pending one also names the consumer holding it."""
    published_at = stream_id_time(stream_id)
    return LaggingEvent(
        event_id=fields.get("event_id", ""),
        trade_date=fields.get("trade_date", ""),
        age_minutes=_age_minutes(now, published_at),
        where=where,
        published_at=published_at,
        stream_id=stream_id,
        consumer=consumer,
        times_delivered=times_delivered,
    )


def unconsumed_events(
    warehouse: Warehouse,
    redis: redis_lib.Redis | None = None,
    older_than: dt.timedelta = DEFAULT_LAG_THRESHOLD,
    now: dt.datetime | None = None,
    *,
    stream: str = STREAM_KEY,
    group: str = M13_GROUP,
) -> list[LaggingEvent]:
    """Events the order module has not consumed ``older_than`` after publication, oldest first.

    Outbox mode (no ``redis``): rows with consumed_at NULL created before now − older_than.
    Redis mode: stream entries after the group's last-delivered-id (never read) or in its pending list
    (read, never acknowledged), aged by the millisecond time in their stream id — plus outbox rows that
    never reached the stream (Redis was down and no relay has run since).
    """
    now = aware_now(now).astimezone(dt.UTC)
    cutoff = now - older_than
    lagging: list[LaggingEvent] = []

    outbox_query = sa.select(event_outbox).where(
        event_outbox.c.consumed_at.is_(None), event_outbox.c.created_at <= cutoff
    )
    if redis is not None:
        outbox_query = outbox_query.where(event_outbox.c.published_at.is_(None))
    with warehouse.begin() as connection:
        for row in connection.execute(outbox_query.order_by(event_outbox.c.created_at)):
            lagging.append(
                LaggingEvent(
                    event_id=row.event_id,
                    trade_date=row.trade_date.isoformat() if row.trade_date else "",
                    age_minutes=_age_minutes(now, as_utc(row.created_at)),
                    where="outbox" if redis is None else "outbox-unrelayed",
                    published_at=as_utc(row.created_at),
                )
            )
    if redis is None:
        return lagging

    try:
        lagging += _stream_lag(redis, stream, group, cutoff, now)
    except redis_lib.RedisError as error:
        raise EventBusError(f"Redis unavailable while checking M13 consumption of {stream}: {error}") from error
    lagging.sort(key=_publication_order)
    return lagging


def _stream_lag(
    redis: redis_lib.Redis, stream: str, group: str, cutoff: dt.datetime, now: dt.datetime
) -> list[LaggingEvent]:
    """Stream entries published before `cutoff` that the group never read or never acknowledged."""
    if not redis.exists(stream):
        return []
    lagging: list[LaggingEvent] = []
    last_delivered = "0-0"
    for info in redis.xinfo_groups(stream):
        if as_text(info.get("name")) == group:
            last_delivered = as_text(info.get("last-delivered-id"))
    cutoff_ms = int(cutoff.timestamp() * 1000)

    # Never delivered to the group: ids after last-delivered-id, and old enough (ids are time-ordered).
    for stream_id, fields in stream_entries(redis.xrange(stream, min=f"({last_delivered}", max=str(cutoff_ms))):
        lagging.append(_stream_event(stream_id, fields, now, "stream-undelivered"))
    # Delivered but not acknowledged. The group may not exist yet (nobody ever read).
    try:
        pending = redis.xpending_range(stream, group, min="-", max=str(cutoff_ms), count=STREAM_MAXLEN)
    except redis_lib.ResponseError:
        pending = []
    for item in pending:
        stream_id = as_text(item["message_id"])
        entries = stream_entries(redis.xrange(stream, min=stream_id, max=stream_id))
        fields = entries[0][1] if entries else {}
        lagging.append(
            _stream_event(
                stream_id,
                fields,
                now,
                "stream-pending",
                consumer=as_text(item["consumer"]),
                times_delivered=int(item["times_delivered"]),
            )
        )
    return lagging
