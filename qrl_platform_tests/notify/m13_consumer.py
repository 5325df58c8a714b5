"""How the order module consumes and acknowledges
-----------------------------------------------
Outbox mode (no Redis)::

    consumer = M13Consumer(warehouse, consumer_name="m13-1")
    for event in consumer.poll():            # rows with consumed_at IS NULL, oldest first
        handle(event.payload)                # must be idempotent per event.event_id
        consumer.ack(event)                  # = mark_consumed(warehouse, event_id, "m13-1")

``mark_consumed`` sets ``consumed_at``/``consumer`` only if still NULL, so with several order-module
workers the first acknowledgement wins and the others see ``False``.

Redis mode::

    XREADGROUP GROUP m13 <consumer> COUNT 10 BLOCK 5000 STREAMS qrl:events:m13 >
    ... handle fields event_id, event_type, trade_date, payload (JSON) ...
    XACK qrl:events:m13 m13 <stream id>

``M13Consumer(warehouse, redis, consumer_name=…)`` does exactly that; ``poll()`` first re-reads the
consumer's own pending entries (``… STREAMS key 0``: delivered before a crash but never acked), then
claims entries another consumer has left unacknowledged for 10 minutes (``XAUTOCLAIM`` from the
cursor the previous claim returned: that consumer is taken for dead), and only then reads new ones
(``>``); ``ack()`` sends ``XACK`` and also sets ``consumed_at`` in the outbox so the warehouse shows
what the order module has taken. The group is created on the first poll, not on every one. A consumer without
warehouse access just uses ``XREADGROUP``/``XACK`` and dedupes on ``event_id`` itself.

Poison entries: an entry delivered ``max_deliveries`` times (default 5) without an acknowledgement
is moved to ``qrl:events:m13:dead`` (acknowledged in the same MULTI/EXEC) instead of being delivered
again, and ``on_dead_letter`` is called (``dead_letter_alerter(channels)``: an ERROR alert).

Signals: acknowledging a day's STRATEGY_SIGNALS_READY (``mark_consumed``, which ``ack()`` calls)
sets ``consumed_at`` on that day's ``strategy_signals`` rows in the same transaction as the outbox
row, so the next notification's "unconsumed signals" count only signals written after the ack.


This consumer is not part of the platform (the order module is another system): it is how the tests consume, and
an example of how the order module does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from qrl_platform.alerts.channels import Alert, Channel, Level, send_alert
from qrl_platform.notify.outbox import EventBusError, get_event, mark_consumed, unconsumed_outbox_events
from qrl_platform.notify.relay import M13_GROUP, STREAM_KEY, as_text, ensure_consumer_group, stream_entries
from qrl_platform.warehouse import Warehouse

log = logging.getLogger(__name__)

# A consumer that has not acknowledged an entry for this long is taken for dead and its entry is claimed
# by the next consumer that polls (well under the 30-minute lag alert, far above a normal handling time).
CLAIM_IDLE_MS = 10 * 60 * 1000
# An entry delivered this many times without an acknowledgement is poison (the order module fails on it every time):
# instead of a further delivery it moves to the dead-letter stream and an alert is sent.
DEFAULT_MAX_DELIVERIES = 5
DEAD_LETTER_STREAM = f"{STREAM_KEY}:dead"


# --------------------------------------------------------------------------------------------------
# Consumption (the order module's side)


@dataclass(frozen=True)
class ReceivedEvent:
    event_id: str
    event_type: str
    trade_date: str
    payload: dict[str, Any]
    stream_id: str | None = None  # None in outbox mode


def _group_read_entries(response: Any) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP answers: [[stream, entries], …] (RESP2) or {stream: entries} (RESP3)."""
    batches = response.values() if isinstance(response, dict) else [entries for _stream, entries in response or []]
    return [entry for batch in batches for entry in stream_entries(batch)]


@dataclass(frozen=True)
class DeadLetter:
    """A stream entry moved to the dead-letter stream after too many deliveries without an ack."""

    event_id: str
    event_type: str
    trade_date: str
    stream_id: str  # its id in the event stream (acknowledged there)
    dead_letter_id: str  # its id in the dead-letter stream
    times_delivered: int
    consumer: str  # the consumer that gave up on it


def dead_letter_alert(dead: DeadLetter) -> Alert:
    """The ERROR alert for a dead-lettered event: what it was, how often it failed, where it is now."""
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
    """What the order module runs (and what tests use) to take events and acknowledge them.

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
        self._claim_cursor = as_text(response[0])
        return self._received(self._without_poison(stream_entries(response[1])))

    def _without_poison(self, entries: list[tuple[str, dict[str, str]]]) -> list[tuple[str, dict[str, str]]]:
        """Entries this consumer now holds, minus those delivered more than max_deliveries times (moved)."""
        if not entries:
            return entries
        ids = [stream_id for stream_id, _fields in entries]
        pending = self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 100, consumername=self.consumer_name
        )
        deliveries = {as_text(item["message_id"]): int(item["times_delivered"]) for item in pending}
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
            dead_letter_id=as_text(dead_letter_id),
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
            except Exception:  # the entry is safely in the dead-letter stream; a broken alert must not stop consuming
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
