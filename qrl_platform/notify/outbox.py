"""The event outbox: tells the order module that a trading day's strategy signals are ready.

The event is a row of the warehouse table ``event_outbox``, written in the same transaction as the
caller's work (transactional outbox). With the ``outbox`` backend (``QRL_EVENT_BUS``, embedded
default) the order module reads it from there; with ``redis`` (production) `relay.py` also puts it on a Redis
Stream, and the row stays the durable record.

Idempotency: one event per (event_type, trade_date) — ``dedupe_key`` is unique in the table, so
publishing again returns the existing event. ``force=True`` records a second event (dedupe key
suffixed with a unique id) and therefore delivers it again.

Acknowledging: ``mark_consumed`` sets ``consumed_at``/``consumer`` only if still NULL, so with several
order-module workers the first acknowledgement wins and the others see ``False``. Acknowledging a day's
STRATEGY_SIGNALS_READY also sets ``consumed_at`` on that day's ``strategy_signals`` rows in the same
transaction, so the next notification's "unconsumed signals" count only signals written after the ack.
How the order module consumes (outbox or stream) is shown by `qrl_platform_tests/notify/m13_consumer.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from qrl_platform.calendar import TAIPEI
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import event_outbox, strategy_signals

log = logging.getLogger(__name__)

STRATEGY_SIGNALS_READY = "STRATEGY_SIGNALS_READY"
SUMMARY_FIELDS = ("total_signals", "buy_signals", "sell_signals", "hold_signals", "strategies_executed")


class EventBusError(RuntimeError):
    """Misconfiguration or a relay that could not reach Redis (the outbox row is kept)."""


# --------------------------------------------------------------------------------------------------
# Payload


def _parse_trade_date(trade_date: dt.date | str) -> dt.date:
    if isinstance(trade_date, dt.datetime):
        raise ValueError(f"trade_date must be a date or 'YYYY-MM-DD', got the datetime {trade_date!r}")
    if isinstance(trade_date, dt.date):
        return trade_date
    try:
        return dt.date.fromisoformat(str(trade_date))
    except ValueError:
        raise ValueError(f"trade_date must be 'YYYY-MM-DD', got {trade_date!r}") from None


def aware_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        # A naive clock would silently shift every timestamp by the host's offset.
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now


def build_signals_ready_payload(
    trade_date: dt.date | str, summary: Mapping[str, int], now: dt.datetime | None = None
) -> dict[str, Any]:
    """The STRATEGY_SIGNALS_READY message exactly as the source document specifies it
    for the notification job JOB-M11-002.

    ``now`` is the notification clock (aware datetime; default: the current time); the timestamp is
    rendered in Taipei time with whole seconds, e.g. ``2024-12-24T16:45:00+08:00``.
    """
    day = _parse_trade_date(trade_date)
    missing = [name for name in SUMMARY_FIELDS if name not in summary]
    unknown = sorted(set(summary) - set(SUMMARY_FIELDS))
    if missing or unknown:
        raise ValueError(
            f"STRATEGY_SIGNALS_READY summary for {day}: missing fields {missing}, unknown fields {unknown}; "
            f"expected exactly {list(SUMMARY_FIELDS)}"
        )
    counts: dict[str, int] = {}
    for name in SUMMARY_FIELDS:
        value = summary[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"STRATEGY_SIGNALS_READY summary for {day}: {name} must be a non-negative integer, got {value!r}"
            )
        counts[name] = value
    timestamp = aware_now(now).astimezone(TAIPEI).replace(microsecond=0).isoformat()
    return {
        "event_type": STRATEGY_SIGNALS_READY,
        "trade_date": day.isoformat(),
        "summary": counts,
        "timestamp": timestamp,
    }


# --------------------------------------------------------------------------------------------------
# Outbox rows


@dataclass(frozen=True)
class OutboxEvent:
    event_id: str
    event_type: str
    trade_date: dt.date | None
    dedupe_key: str
    payload: dict[str, Any]
    created_at: dt.datetime
    published_at: dt.datetime | None = None
    stream_id: str | None = None
    consumed_at: dt.datetime | None = None
    consumer: str | None = None
    is_new: bool = False  # True when this call inserted the row; False when an existing event was returned


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored in UTC; SQLite hands them back naive, PostgreSQL aware."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _event_from_row(row: Any, *, is_new: bool = False) -> OutboxEvent:
    return OutboxEvent(
        event_id=row.event_id,
        event_type=row.event_type,
        trade_date=row.trade_date,
        dedupe_key=row.dedupe_key,
        payload=json.loads(row.payload),
        created_at=as_utc(row.created_at),
        published_at=as_utc(row.published_at),
        stream_id=row.stream_id,
        consumed_at=as_utc(row.consumed_at),
        consumer=row.consumer,
        is_new=is_new,
    )


def _insert_unless_key_exists(connection: Connection, row: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT (dedupe_key) DO NOTHING — race-free and, unlike catching an
    IntegrityError, it leaves the caller's transaction usable on PostgreSQL."""
    dialect_inserts = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
    dialect_insert = dialect_inserts.get(connection.dialect.name)
    if dialect_insert is None:
        raise EventBusError(f"event_outbox supports SQLite and PostgreSQL, not {connection.dialect.name}")
    statement = (
        dialect_insert(event_outbox)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(event_outbox.c.event_id)
    )
    # RETURNING rather than rowcount: drivers disagree on rowcount for a skipped conflicting row.
    return connection.execute(statement).first() is not None


def record_event(
    connection: Connection,
    event_type: str,
    trade_date: dt.date | str | None,
    payload: Mapping[str, Any],
    *,
    force: bool = False,
    now: dt.datetime | None = None,
) -> OutboxEvent:
    """Write an event into ``event_outbox`` on the caller's connection (so it commits or rolls back
    together with the caller's work). Idempotent per (event_type, trade_date) unless ``force``."""
    created_at = aware_now(now).astimezone(dt.UTC)
    day = _parse_trade_date(trade_date) if trade_date is not None else None
    base_key = f"{event_type}:{day.isoformat() if day else '-'}"
    row = {
        "event_id": uuid.uuid4().hex,
        "event_type": event_type,
        "dedupe_key": base_key,
        "trade_date": day,
        "payload": json.dumps(dict(payload), ensure_ascii=False),
        "created_at": created_at,
    }
    inserted = _insert_unless_key_exists(connection, row)
    if not inserted and force:
        # A forced re-publication is a new event with its own key, so it is delivered again while the
        # plain key keeps guarding against accidental duplicates.
        row["dedupe_key"] = f"{base_key}:{row['event_id']}"
        inserted = _insert_unless_key_exists(connection, row)
    key = row["dedupe_key"]
    stored = connection.execute(sa.select(event_outbox).where(event_outbox.c.dedupe_key == key)).one()
    return _event_from_row(stored, is_new=inserted)


def record_signals_ready(
    connection: Connection,
    trade_date: dt.date | str,
    summary: Mapping[str, int],
    *,
    force: bool = False,
    now: dt.datetime | None = None,
) -> OutboxEvent:
    """STRATEGY_SIGNALS_READY into the outbox inside the caller's transaction (then call
    ``relay_pending`` after the commit when the backend is Redis)."""
    payload = build_signals_ready_payload(trade_date, summary, now)
    return record_event(connection, STRATEGY_SIGNALS_READY, trade_date, payload, force=force, now=now)


def get_event(warehouse: Warehouse, event_id: str) -> OutboxEvent | None:
    with warehouse.begin() as connection:
        row = connection.execute(sa.select(event_outbox).where(event_outbox.c.event_id == event_id)).one_or_none()
    return _event_from_row(row) if row is not None else None


def unconsumed_outbox_events(warehouse: Warehouse, *, limit: int | None = None) -> list[OutboxEvent]:
    """Outbox rows the order module has not acknowledged yet, oldest first."""
    query = (
        sa.select(event_outbox)
        .where(event_outbox.c.consumed_at.is_(None))
        .order_by(event_outbox.c.created_at, event_outbox.c.event_id)
    )
    if limit is not None:
        query = query.limit(limit)
    with warehouse.begin() as connection:
        return [_event_from_row(row) for row in connection.execute(query)]


def mark_consumed(warehouse: Warehouse, event_id: str, consumer: str, *, now: dt.datetime | None = None) -> bool:
    """Acknowledge an event in the outbox. True if this call consumed it; False if it was already
    consumed (by anyone) — so several order-module workers never both act on the same event.

    Acknowledging a STRATEGY_SIGNALS_READY event also sets ``consumed_at`` on that trading day's
    ``strategy_signals`` rows that have none yet, in the same transaction as the outbox row: the order module
    reads the day's signals when it handles the event, so after the ack they are consumed, and the
    notification's "unconsumed signals" are only those written since (a re-run that changed them).
    """
    consumed_at = aware_now(now).astimezone(dt.UTC)
    with warehouse.begin() as connection:
        result = connection.execute(
            event_outbox.update()
            .where(event_outbox.c.event_id == event_id, event_outbox.c.consumed_at.is_(None))
            .values(consumed_at=consumed_at, consumer=consumer)
        )
        if result.rowcount == 1:
            row = connection.execute(
                sa.select(event_outbox.c.event_type, event_outbox.c.trade_date).where(
                    event_outbox.c.event_id == event_id
                )
            ).one()
            if row.event_type == STRATEGY_SIGNALS_READY and row.trade_date is not None:
                connection.execute(
                    strategy_signals.update()
                    .where(strategy_signals.c.trade_date == row.trade_date, strategy_signals.c.consumed_at.is_(None))
                    .values(consumed_at=consumed_at)
                )
            return True
        exists = connection.execute(
            sa.select(event_outbox.c.event_id).where(event_outbox.c.event_id == event_id)
        ).first()
    if exists is None:
        raise KeyError(f"no event {event_id!r} in event_outbox")
    return False
