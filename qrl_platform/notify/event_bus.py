"""The M13 event bus: tells the order module (M13) that a trading day's strategy signals are ready.

Two backends (``QRL_EVENT_BUS``):

* ``outbox`` (embedded default) — the event is a row of the warehouse table ``event_outbox``; M13
  reads it from there.
* ``redis`` (production) — the event is still written to ``event_outbox`` first, in the same
  transaction as the caller's work (transactional outbox), and then *relayed* to the Redis Stream
  ``qrl:events:m13`` (``XADD … MAXLEN ~ 10000``) which M13 reads through the consumer group ``m13``.
  If Redis is down at publication time the row simply stays unpublished and the next
  ``relay_pending`` sends it: nothing is lost because the warehouse row is the durable record.

Idempotency: one event per (event_type, trade_date) — ``dedupe_key`` is unique in the table, so
publishing again returns the existing event. ``force=True`` records a second event (dedupe key
suffixed with a unique id) and therefore delivers it again.

Delivery guarantee: each event reaches the stream once. The relay marks a row published only after
its stream entry exists; if the process dies between the ``XADD`` and the commit of that mark, the
row is relayed again, but the ``XADD`` is idempotent per ``event_id``: a Lua script (atomic in Redis)
adds the entry and records its stream id in the hash ``<stream>:relayed`` (one small field per
event), and a second relay of the same event gets the recorded id back instead of a second entry.
Consumers should still treat ``event_id`` as the idempotency key (a consumer can die between
handling an entry and acknowledging it); ``M13Consumer`` does: it acknowledges and skips an entry
whose event is already consumed. Rows already consumed are never relayed again.

How M13 consumes and acknowledges
---------------------------------
Outbox mode (no Redis)::

    consumer = M13Consumer(warehouse, consumer_name="m13-1")
    for event in consumer.poll():            # rows with consumed_at IS NULL, oldest first
        handle(event.payload)                # must be idempotent per event.event_id
        consumer.ack(event)                  # = mark_consumed(warehouse, event_id, "m13-1")

``mark_consumed`` sets ``consumed_at``/``consumer`` only if still NULL, so with several M13 workers
the first acknowledgement wins and the others see ``False``.

Redis mode::

    XREADGROUP GROUP m13 <consumer> COUNT 10 BLOCK 5000 STREAMS qrl:events:m13 >
    ... handle fields event_id, event_type, trade_date, payload (JSON) ...
    XACK qrl:events:m13 m13 <stream id>

``M13Consumer(warehouse, redis, consumer_name=…)`` does exactly that; ``poll()`` first re-reads the
consumer's own pending entries (``… STREAMS key 0``: delivered before a crash but never acked), then
claims entries another consumer has left unacknowledged for 10 minutes (``XAUTOCLAIM`` from the
cursor the previous claim returned: that consumer is taken for dead), and only then reads new ones
(``>``); ``ack()`` sends ``XACK`` and also sets ``consumed_at`` in the outbox so the warehouse shows
what M13 has taken. The group is created on the first poll, not on every one. A consumer without
warehouse access just uses ``XREADGROUP``/``XACK`` and dedupes on ``event_id`` itself.

Poison entries: an entry delivered ``max_deliveries`` times (default 5) without an acknowledgement
is moved to ``qrl:events:m13:dead`` (acknowledged in the same MULTI/EXEC) instead of being delivered
again, and ``on_dead_letter`` is called (``dead_letter_alerter(channels)``: an ERROR alert).

Signals: acknowledging a day's STRATEGY_SIGNALS_READY (``mark_consumed``, which ``ack()`` calls)
sets ``consumed_at`` on that day's ``strategy_signals`` rows in the same transaction as the outbox
row, so the next notification's "unconsumed signals" count only signals written after the ack.

Lag: ``unconsumed_events`` lists events M13 has not consumed ``older_than`` after publication
(S7: a sensor warns after 30 minutes).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis as redis_lib
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from qrl_platform.alerts.channels import Alert, Channel, Level, send_alert
from qrl_platform.calendar import TAIPEI
from qrl_platform.settings import settings
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import event_outbox, strategy_signals

log = logging.getLogger(__name__)


STRATEGY_SIGNALS_READY = "STRATEGY_SIGNALS_READY"
SUMMARY_FIELDS = ("total_signals", "buy_signals", "sell_signals", "hold_signals", "strategies_executed")

BACKENDS = ("outbox", "redis")
DEFAULT_BACKEND = "outbox"
STREAM_KEY = "qrl:events:m13"
STREAM_MAXLEN = 10_000
M13_GROUP = "m13"
DEFAULT_LAG_THRESHOLD = dt.timedelta(minutes=30)


# A consumer that has not acknowledged an entry for this long is taken for dead and its entry is claimed
# by the next consumer that polls (well under the 30-minute lag alert, far above a normal handling time).
CLAIM_IDLE_MS = 10 * 60 * 1000
# An entry delivered this many times without an acknowledgement is poison (M13 fails on it every time):
# instead of a further delivery it moves to the dead-letter stream and an alert is sent.
DEFAULT_MAX_DELIVERIES = 5
DEAD_LETTER_STREAM = f"{STREAM_KEY}:dead"


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


def _aware_now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    if now.tzinfo is None:
        # A naive clock would silently shift every timestamp by the host's offset.
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    return now


def build_signals_ready_payload(
    trade_date: dt.date | str, summary: Mapping[str, int], now: dt.datetime | None = None
) -> dict[str, Any]:
    """The STRATEGY_SIGNALS_READY message exactly as the source document (M11-002) specifies it.

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
    timestamp = _aware_now(now).astimezone(TAIPEI).replace(microsecond=0).isoformat()
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


def _utc(value: dt.datetime | None) -> dt.datetime | None:
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
        created_at=_utc(row.created_at),
        published_at=_utc(row.published_at),
        stream_id=row.stream_id,
        consumed_at=_utc(row.consumed_at),
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
    created_at = _aware_now(now).astimezone(dt.UTC)
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
    """Outbox rows M13 has not acknowledged yet, oldest first."""
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
    consumed (by anyone) — so several M13 workers never both act on the same event.

    Acknowledging a STRATEGY_SIGNALS_READY event also sets ``consumed_at`` on that trading day's
    ``strategy_signals`` rows that have none yet, in the same transaction as the outbox row: M13
    reads the day's signals when it handles the event, so after the ack they are consumed, and the
    notification's "unconsumed signals" are only those written since (a re-run that changed them).
    """
    consumed_at = _aware_now(now).astimezone(dt.UTC)
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


# --------------------------------------------------------------------------------------------------
# Redis relay


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ensure_consumer_group(redis: redis_lib.Redis, stream: str = STREAM_KEY, group: str = M13_GROUP) -> None:
    """XGROUP CREATE <stream> m13 0 MKSTREAM, tolerating an existing group. The group starts at id 0
    so events relayed before M13 first connected are still delivered to it."""
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
    return _text(script(keys=[stream, relayed_key(stream)], args=[fields["event_id"], maxlen, *pairs]))


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
    published_at = _aware_now(now).astimezone(dt.UTC)
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


# --------------------------------------------------------------------------------------------------
# Publishing


def resolve_backend(backend: str | None = None) -> str:
    """The backend name: explicit value, else QRL_EVENT_BUS, else 'outbox'."""
    name = (backend or settings().event_bus or DEFAULT_BACKEND).strip().lower()
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


# --------------------------------------------------------------------------------------------------
# Consumption (M13 side)


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: str
    event_type: str
    trade_date: str
    payload: dict[str, Any]
    stream_id: str | None = None  # None in outbox mode


def _entries(entries: Any) -> list[tuple[str, dict[str, str]]]:
    """XRANGE-shaped answers as (id, fields); fields are empty for an entry deleted while pending."""
    return [
        (_text(entry_id), {_text(k): _text(v) for k, v in (fields or {}).items()}) for entry_id, fields in entries or []
    ]


def _group_read_entries(response: Any) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP answers: [[stream, entries], …] (RESP2) or {stream: entries} (RESP3)."""
    batches = response.values() if isinstance(response, dict) else [entries for _stream, entries in response or []]
    return [entry for batch in batches for entry in _entries(batch)]


@dataclass(frozen=True)
class DeadLetter:
    """A stream entry moved to the dead-letter stream after too many deliveries without an ack."""

    event_id: str
    event_type: str
    trade_date: str
    stream_id: str  # its id in the M13 stream (acknowledged there)
    dead_letter_id: str  # its id in the dead-letter stream
    times_delivered: int
    consumer: str  # the consumer that gave up on it


def dead_letter_alert(dead: DeadLetter) -> Alert:
    """The ERROR alert for a dead-lettered M13 event: what it was, how often it failed, where it is now."""
    return Alert(
        level=Level.ERROR,
        title=f"M13 event for {dead.trade_date or 'no date'} dead-lettered after {dead.times_delivered} deliveries",
        message=(
            f"{dead.event_type} {dead.event_id} (stream id {dead.stream_id}) was delivered "
            f"{dead.times_delivered} times without an acknowledgement, so M13 fails on it every time. "
            f"It was moved to {DEAD_LETTER_STREAM} as {dead.dead_letter_id} and acknowledged; M13 will not "
            "see it again. Fix the cause, then re-publish the day (qrl notify <date> --force)."
        ),
        source="M13Consumer",
        tags={"event_id": dead.event_id, "trade_date": dead.trade_date, "consumer": dead.consumer},
    )


def dead_letter_alerter(channels: Iterable[Channel]) -> Callable[[DeadLetter], None]:
    """An `on_dead_letter` callback that sends `dead_letter_alert` to the given alert channels."""
    channels = list(channels)

    def send(dead: DeadLetter) -> None:
        report = send_alert(dead_letter_alert(dead), channels)
        for failure in report.failures:
            log.error(
                "dead-letter alert for %s not delivered on %s: %s", dead.event_id, failure.channel, failure.detail
            )

    return send


class M13Consumer:
    """What M13 runs (and what tests use) to take events and acknowledge them.

    With ``redis`` it reads the stream through the consumer group; without, it reads the outbox. When
    a warehouse is given in Redis mode, acknowledgements are mirrored to ``event_outbox.consumed_at``
    and entries whose event is already consumed (a relay duplicate) are acknowledged and skipped.

    Operating it (Redis mode):

    * The consumer group is created (``XGROUP CREATE … MKSTREAM``) on the first poll only; if it
      disappears (a Redis restarted without persistence answers NOGROUP) it is created again once.
    * Entries of dead consumers are claimed with ``XAUTOCLAIM``, continuing from the cursor the
      previous call returned (back to ``0-0`` only once a full pass has been made), so a long pending
      list is worked through rather than rescanned from its start on every poll.
    * Poison: an entry already delivered ``max_deliveries`` times (Redis counts every delivery,
      including re-reads of one's own pending entries and claims) is not delivered again. It is
      copied to ``dead_letter_stream`` (its fields plus ``stream_id``, ``times_delivered``,
      ``consumer``) and acknowledged in one MULTI/EXEC, and ``on_dead_letter`` is called — e.g.
      ``dead_letter_alerter(channels)`` sends an ERROR alert. The outbox row stays unconsumed: it was
      never handled. The outbox mode has no delivery count and no dead letter.
    """

    def __init__(
        self,
        warehouse: Warehouse | None = None,
        redis: redis_lib.Redis | None = None,
        *,
        consumer_name: str = "m13-1",
        group: str = M13_GROUP,
        stream: str = STREAM_KEY,
        claim_idle_ms: int | None = CLAIM_IDLE_MS,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        dead_letter_stream: str = DEAD_LETTER_STREAM,
        on_dead_letter: Callable[[DeadLetter], None] | None = None,
    ):
        if warehouse is None and redis is None:
            raise EventBusError("M13Consumer needs a warehouse (outbox mode) or a Redis client (stream mode)")
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int) or max_deliveries < 1:
            raise ValueError(f"max_deliveries must be an integer >= 1, got {max_deliveries!r}")
        self.warehouse = warehouse
        self.redis = redis
        self.consumer_name = consumer_name
        self.group = group
        self.stream = stream
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.dead_letter_stream = dead_letter_stream
        self.on_dead_letter = on_dead_letter
        self.dead_letters: list[DeadLetter] = []  # moved by this consumer (newest last)
        self._group_ready = False
        self._claim_cursor = "0-0"

    @property
    def mode(self) -> str:
        return "redis" if self.redis is not None else "outbox"

    def poll(self, count: int = 10, block_ms: int | None = None) -> list[ReceivedEvent]:
        if self.redis is None:
            return [
                ReceivedEvent(e.event_id, e.event_type, e.trade_date.isoformat() if e.trade_date else "", e.payload)
                for e in unconsumed_outbox_events(self.warehouse, limit=count)
            ]
        if not self._group_ready:
            ensure_consumer_group(self.redis, self.stream, self.group)
            self._group_ready = True
        # Entries delivered to this consumer before a crash but never acknowledged come first, then
        # entries another consumer took and left unacknowledged for claim_idle_ms (it died), then new ones.
        events = self._read_group("0", count, None)
        if not events:
            events = self._claim_stale(count)
        if not events:
            events = self._read_group(">", count, block_ms)
        return events

    def _read_group(self, start: str, count: int, block_ms: int | None) -> list[ReceivedEvent]:
        try:
            response = self.redis.xreadgroup(
                self.group, self.consumer_name, {self.stream: start}, count=count, block=block_ms
            )
        except redis_lib.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # The stream or group vanished (e.g. Redis restarted without persistence): create it again.
            ensure_consumer_group(self.redis, self.stream, self.group)
            self._claim_cursor = "0-0"
            response = self.redis.xreadgroup(
                self.group, self.consumer_name, {self.stream: start}, count=count, block=block_ms
            )
        entries = _group_read_entries(response)
        if start != ">":  # own pending entries: delivered before, maybe many times
            entries = self._without_poison(entries)
        return self._received(entries)

    def _claim_stale(self, count: int) -> list[ReceivedEvent]:
        """XAUTOCLAIM: take over entries pending on another consumer for at least claim_idle_ms."""
        if self.claim_idle_ms is None:
            return []
        try:
            response = self.redis.xautoclaim(
                self.stream, self.group, self.consumer_name, min_idle_time=self.claim_idle_ms,
                start_id=self._claim_cursor, count=count,
            )  # fmt: skip
        except redis_lib.ResponseError as error:
            if "unknown command" not in str(error).lower():
                raise
            # XAUTOCLAIM needs Redis >= 6.2; older servers still get own-pending and new entries.
            log.warning("Redis has no XAUTOCLAIM (needs >= 6.2): entries of dead consumers are not claimed")
            self.claim_idle_ms = None
            return []
        # [next start id, claimed entries, ids deleted while pending (Redis 7; they leave the PEL by themselves)]
        # The next call continues from the cursor; "0-0" means the scan went round the whole pending list.
        self._claim_cursor = _text(response[0])
        return self._received(self._without_poison(_entries(response[1])))

    def _without_poison(self, entries: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        """Entries this consumer now holds, minus those delivered more than max_deliveries times (moved)."""
        if not entries:
            return entries
        ids = [stream_id for stream_id, _fields in entries]
        pending = self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 100, consumername=self.consumer_name
        )
        deliveries = {_text(item["message_id"]): int(item["times_delivered"]) for item in pending}
        kept = []
        for stream_id, fields in entries:
            if deliveries.get(stream_id, 1) > self.max_deliveries and fields.get("event_id"):
                self._dead_letter(stream_id, fields, deliveries[stream_id])
            else:
                kept.append((stream_id, fields))
        return kept

    def _dead_letter(self, stream_id: str, fields: dict[str, str], times_delivered: int) -> None:
        moved = {
            **fields,
            "stream_id": stream_id,
            "times_delivered": str(times_delivered),
            "consumer": self.consumer_name,
        }
        pipeline = self.redis.pipeline(transaction=True)  # MULTI/EXEC: copied and acknowledged, or neither
        pipeline.xadd(self.dead_letter_stream, moved)
        pipeline.xack(self.stream, self.group, stream_id)
        dead_letter_id, _acked = pipeline.execute()
        dead = DeadLetter(
            event_id=fields.get("event_id", ""),
            event_type=fields.get("event_type", ""),
            trade_date=fields.get("trade_date", ""),
            stream_id=stream_id,
            dead_letter_id=_text(dead_letter_id),
            times_delivered=times_delivered,
            consumer=self.consumer_name,
        )
        self.dead_letters.append(dead)
        log.error(
            "M13 entry %s (event %s) delivered %d times without an ack: moved to %s as %s",
            stream_id, dead.event_id, times_delivered, self.dead_letter_stream, dead.dead_letter_id,
        )  # fmt: skip
        if self.on_dead_letter is not None:
            try:
                self.on_dead_letter(dead)
            except Exception:  # the entry is safely in the dead-letter stream; a broken alert must not stop M13
                log.exception("on_dead_letter failed for %s", dead.event_id)

    def _received(self, entries: list[tuple[str, dict[str, str]]]) -> list[ReceivedEvent]:
        events: list[ReceivedEvent] = []
        seen: set[str] = set()
        for stream_id, fields in entries:
            event_id = fields.get("event_id")
            if not event_id:  # trimmed away while pending: nothing left to deliver
                self.redis.xack(self.stream, self.group, stream_id)
                continue
            if event_id in seen or self._already_consumed(event_id):
                self.redis.xack(self.stream, self.group, stream_id)  # duplicate from a relay retried after a crash
                continue
            seen.add(event_id)
            events.append(
                ReceivedEvent(
                    event_id=event_id,
                    event_type=fields.get("event_type", ""),
                    trade_date=fields.get("trade_date", ""),
                    payload=json.loads(fields.get("payload", "{}")),
                    stream_id=stream_id,
                )
            )
        return events

    def _already_consumed(self, event_id: str) -> bool:
        if self.warehouse is None:
            return False
        event = get_event(self.warehouse, event_id)
        return event is not None and event.consumed_at is not None

    def ack(self, event: ReceivedEvent, *, now: dt.datetime | None = None) -> bool:
        """Acknowledge: XACK (stream mode) and consumed_at in the outbox. True if newly consumed."""
        if self.redis is not None and event.stream_id:
            self.redis.xack(self.stream, self.group, event.stream_id)
        if self.warehouse is None:
            return True
        return mark_consumed(self.warehouse, event.event_id, self.consumer_name, now=now)


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


def unconsumed_events(
    warehouse: Warehouse,
    redis: redis_lib.Redis | None = None,
    older_than: dt.timedelta = DEFAULT_LAG_THRESHOLD,
    now: dt.datetime | None = None,
    *,
    stream: str = STREAM_KEY,
    group: str = M13_GROUP,
) -> list[LaggingEvent]:
    """Events M13 has not consumed ``older_than`` after publication, oldest first.

    Outbox mode (no ``redis``): rows with consumed_at NULL created before now − older_than.
    Redis mode: stream entries after the group's last-delivered-id (never read) or in its pending list
    (read, never acknowledged), aged by the millisecond time in their stream id — plus outbox rows that
    never reached the stream (Redis was down and no relay has run since).
    """
    now = _aware_now(now).astimezone(dt.UTC)
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
                    age_minutes=_age_minutes(now, _utc(row.created_at)),
                    where="outbox" if redis is None else "outbox-unrelayed",
                    published_at=_utc(row.created_at),
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
        if _text(info.get("name")) == group:
            last_delivered = _text(info.get("last-delivered-id"))
    cutoff_ms = int(cutoff.timestamp() * 1000)

    # Never delivered to the group: ids after last-delivered-id, and old enough (ids are time-ordered).
    for stream_id, fields in _entries(redis.xrange(stream, min=f"({last_delivered}", max=str(cutoff_ms))):
        lagging.append(
            LaggingEvent(
                event_id=fields.get("event_id", ""),
                trade_date=fields.get("trade_date", ""),
                age_minutes=_age_minutes(now, stream_id_time(stream_id)),
                where="stream-undelivered",
                published_at=stream_id_time(stream_id),
                stream_id=stream_id,
            )
        )
    # Delivered but not acknowledged. The group may not exist yet (nobody ever read).
    try:
        pending = redis.xpending_range(stream, group, min="-", max=str(cutoff_ms), count=STREAM_MAXLEN)
    except redis_lib.ResponseError:
        pending = []
    for item in pending:
        stream_id = _text(item["message_id"])
        entries = _entries(redis.xrange(stream, min=stream_id, max=stream_id))
        fields = entries[0][1] if entries else {}
        lagging.append(
            LaggingEvent(
                event_id=fields.get("event_id", ""),
                trade_date=fields.get("trade_date", ""),
                age_minutes=_age_minutes(now, stream_id_time(stream_id)),
                where="stream-pending",
                published_at=stream_id_time(stream_id),
                stream_id=stream_id,
                consumer=_text(item["consumer"]),
                times_delivered=int(item["times_delivered"]),
            )
        )
    return lagging
