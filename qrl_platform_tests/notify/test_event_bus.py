"""The order module's event bus on real servers: outbox on SQLite and PostgreSQL, relay to a real Redis Stream."""

import datetime as dt
import json
import time

import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from qrl_platform.notify.lag import unconsumed_events
from qrl_platform.notify.outbox import (
    EventBusError,
    as_utc,
    build_signals_ready_payload,
    mark_consumed,
    record_signals_ready,
)
from qrl_platform.notify.relay import (
    M13_GROUP,
    STREAM_KEY,
    STREAM_MAXLEN,
    as_text,
    ensure_consumer_group,
    publish_signals_ready,
    relay_pending,
)
from qrl_platform.warehouse.schema import event_outbox
from qrl_platform_tests.conftest import configured_resources
from qrl_platform_tests.notify.m13_consumer import M13Consumer
from qrl_platform_tests.servers import free_port

SUMMARY = {"total_signals": 45, "buy_signals": 38, "sell_signals": 5, "hold_signals": 2, "strategies_executed": 10}
# 16:45 in Taipei, the NOTIFY_M13_SIGNALS schedule of the source document.
AT_1645_TAIPEI = dt.datetime(2024, 12, 24, 8, 45, tzinfo=dt.UTC)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def redis_down():
    """A client pointing at a closed port, failing at once instead of retrying."""
    client = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0), decode_responses=True
    )
    yield client
    client.close()


def _outbox_rows(warehouse) -> list:
    with warehouse.begin() as connection:
        return connection.execute(sa.select(event_outbox).order_by(event_outbox.c.created_at)).all()


def _real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------------- payload


def test_payload_is_exactly_the_source_message():
    payload = build_signals_ready_payload("2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    # The example of JOB-M11-002 (the notification) in the source document, key for key and in the same order.
    assert json.dumps(payload) == json.dumps(
        {
            "event_type": "STRATEGY_SIGNALS_READY",
            "trade_date": "2024-12-24",
            "summary": {
                "total_signals": 45,
                "buy_signals": 38,
                "sell_signals": 5,
                "hold_signals": 2,
                "strategies_executed": 10,
            },
            "timestamp": "2024-12-24T16:45:00+08:00",
        }
    )


def test_payload_timestamp_is_taipei_time_whatever_the_clock_zone():
    clock = dt.datetime(2024, 12, 24, 3, 45, 12, 987654, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert (
        build_signals_ready_payload(dt.date(2024, 12, 24), SUMMARY, now=clock)["timestamp"]
        == "2024-12-24T16:45:12+08:00"
    )


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({k: v for k, v in SUMMARY.items() if k != "sell_signals"}, "missing fields ['sell_signals']"),
        ({**SUMMARY, "buy_ratio": 0.8}, "unknown fields ['buy_ratio']"),
        ({**SUMMARY, "hold_signals": -1}, "hold_signals must be a non-negative integer, got -1"),
        ({**SUMMARY, "total_signals": "45"}, "total_signals must be a non-negative integer, got '45'"),
    ],
)
def test_bad_summary_names_the_field_and_date(summary, message):
    with pytest.raises(ValueError, match="2024-12-24") as error:
        build_signals_ready_payload("2024-12-24", summary, now=AT_1645_TAIPEI)
    assert message in str(error.value)


def test_bad_trade_date_and_naive_clock_are_rejected():
    with pytest.raises(ValueError, match="trade_date must be 'YYYY-MM-DD', got '2024/12/24'"):
        build_signals_ready_payload("2024/12/24", SUMMARY, now=AT_1645_TAIPEI)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        build_signals_ready_payload("2024-12-24", SUMMARY, now=dt.datetime(2024, 12, 24, 16, 45))


# ----------------------------------------------------------------------------------------------- outbox


def test_publishing_twice_returns_the_existing_event(warehouse):
    first = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    second = publish_signals_ready(
        warehouse, "2024-12-24", {**SUMMARY, "total_signals": 99}, now=AT_1645_TAIPEI + dt.timedelta(hours=1)
    )
    assert first.created and not second.created
    assert second.event.event_id == first.event.event_id
    assert second.event.payload == first.event.payload  # the event already published stands
    rows = _outbox_rows(warehouse)
    assert len(rows) == 1
    assert rows[0].dedupe_key == "STRATEGY_SIGNALS_READY:2024-12-24"
    assert rows[0].trade_date == dt.date(2024, 12, 24)
    assert json.loads(rows[0].payload) == build_signals_ready_payload("2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    assert first.event.created_at == AT_1645_TAIPEI
    # Another day is another event.
    assert publish_signals_ready(warehouse, "2024-12-25", SUMMARY, now=AT_1645_TAIPEI).created
    assert len(_outbox_rows(warehouse)) == 2


def test_force_records_a_new_event(warehouse):
    first = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    later = AT_1645_TAIPEI + dt.timedelta(minutes=20)
    forced = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, force=True, now=later)
    assert forced.created and forced.event.event_id != first.event.event_id
    assert forced.event.dedupe_key == f"STRATEGY_SIGNALS_READY:2024-12-24:{forced.event.event_id}"
    assert len(_outbox_rows(warehouse)) == 2
    # Both are pending for the order module (the forced one is delivered again).
    consumer = M13Consumer(warehouse, consumer_name="m13-a")
    assert [e.event_id for e in consumer.poll()] == [first.event.event_id, forced.event.event_id]


def test_force_on_a_first_publication_takes_the_plain_key(warehouse):
    forced = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, force=True, now=AT_1645_TAIPEI)
    assert forced.event.dedupe_key == "STRATEGY_SIGNALS_READY:2024-12-24"
    assert not publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI).created


def test_event_commits_and_rolls_back_with_the_callers_transaction(warehouse):
    with pytest.raises(RuntimeError, match="signals write failed"):
        with warehouse.begin() as connection:
            record_signals_ready(connection, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
            raise RuntimeError("signals write failed")
    assert _outbox_rows(warehouse) == []
    with warehouse.begin() as connection:
        event = record_signals_ready(connection, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
        # A repeat inside the same transaction is still idempotent and leaves it usable.
        again = record_signals_ready(connection, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
        assert again.event_id == event.event_id and not again.is_new
    assert len(_outbox_rows(warehouse)) == 1


def test_outbox_consumer_poll_and_ack(warehouse):
    published = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    consumer = M13Consumer(warehouse, consumer_name="m13-a")
    [event] = consumer.poll()
    assert event.event_id == published.event.event_id
    assert event.trade_date == "2024-12-24" and event.stream_id is None
    assert event.payload == published.event.payload
    acked_at = AT_1645_TAIPEI + dt.timedelta(minutes=3)
    assert consumer.ack(event, now=acked_at) is True
    assert consumer.poll() == []
    [row] = _outbox_rows(warehouse)
    assert row.consumer == "m13-a" and as_utc(row.consumed_at) == acked_at
    # A second worker acknowledging the same event learns it was already taken.
    assert mark_consumed(warehouse, event.event_id, "m13-b") is False
    assert _outbox_rows(warehouse)[0].consumer == "m13-a"
    with pytest.raises(KeyError, match="no event 'nope' in event_outbox"):
        mark_consumed(warehouse, "nope", "m13-a")


def test_outbox_lag(warehouse):
    published = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    assert unconsumed_events(warehouse, now=AT_1645_TAIPEI + dt.timedelta(minutes=29)) == []
    [late] = unconsumed_events(warehouse, now=AT_1645_TAIPEI + dt.timedelta(minutes=31))
    assert (late.event_id, late.trade_date, late.age_minutes, late.where) == (
        published.event.event_id,
        "2024-12-24",
        31.0,
        "outbox",
    )
    assert late.published_at == AT_1645_TAIPEI
    assert unconsumed_events(
        warehouse, older_than=dt.timedelta(minutes=5), now=AT_1645_TAIPEI + dt.timedelta(minutes=6)
    )
    mark_consumed(warehouse, published.event.event_id, "m13-a")
    assert unconsumed_events(warehouse, now=AT_1645_TAIPEI + dt.timedelta(hours=5)) == []


# ------------------------------------------------------------------------------------------------ redis


def test_publish_relays_to_the_stream(warehouse, redis_client):
    result = publish_signals_ready(
        warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client, now=AT_1645_TAIPEI
    )
    assert result.relay_error is None and result.stream_id
    [(stream_id, fields)] = redis_client.xrange(STREAM_KEY)
    assert stream_id == result.stream_id
    assert fields == {
        "event_id": result.event.event_id,
        "event_type": "STRATEGY_SIGNALS_READY",
        "trade_date": "2024-12-24",
        "payload": json.dumps(build_signals_ready_payload("2024-12-24", SUMMARY, now=AT_1645_TAIPEI)),
    }
    [row] = _outbox_rows(warehouse)
    assert row.stream_id == stream_id and row.published_at is not None and row.consumed_at is None
    assert [group["name"] for group in redis_client.xinfo_groups(STREAM_KEY)] == [M13_GROUP]
    # Nothing left to relay; publishing again is idempotent and adds no entry.
    assert relay_pending(warehouse, redis_client) == []
    again = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    assert not again.created and again.stream_id == stream_id
    assert redis_client.xlen(STREAM_KEY) == 1


def test_consumer_group_is_created_idempotently(redis_client):
    ensure_consumer_group(redis_client)
    ensure_consumer_group(redis_client)  # BUSYGROUP is ignored
    assert [group["name"] for group in redis_client.xinfo_groups(STREAM_KEY)] == [M13_GROUP]


def test_relay_caps_the_stream_with_maxlen(warehouse, redis_client):
    assert STREAM_MAXLEN == 10_000
    for index in range(300):
        redis_client.xadd(STREAM_KEY, {"event_id": f"old-{index}"})
    publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    [relayed] = relay_pending(warehouse, redis_client, maxlen=20)
    # MAXLEN ~ trims whole radix-tree nodes: fewer entries, at least 20, the new one kept last.
    assert 20 <= redis_client.xlen(STREAM_KEY) < 300
    [(last_id, last_fields)] = redis_client.xrevrange(STREAM_KEY, count=1)
    assert last_id == relayed.stream_id and last_fields["trade_date"] == "2024-12-24"


def test_redis_down_keeps_the_event_and_a_later_relay_delivers_it_once(warehouse, redis_down, redis_client):
    result = publish_signals_ready(
        warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_down, now=AT_1645_TAIPEI
    )
    assert result.created and result.stream_id is None
    assert "Redis unavailable" in result.relay_error and "event_outbox" in result.relay_error
    [row] = _outbox_rows(warehouse)
    assert row.published_at is None and row.stream_id is None
    with pytest.raises(EventBusError, match="stay in event_outbox"):
        relay_pending(warehouse, redis_down)
    with pytest.raises(EventBusError, match="Redis unavailable while checking M13 consumption of qrl:events:m13"):
        unconsumed_events(warehouse, redis_down)
    # Still missing 31 minutes later: the lag check sees it although it never reached the stream.
    [late] = unconsumed_events(warehouse, redis_client, now=AT_1645_TAIPEI + dt.timedelta(minutes=31))
    assert (late.event_id, late.where) == (result.event.event_id, "outbox-unrelayed")

    [relayed] = relay_pending(warehouse, redis_client)
    assert relayed.event_id == result.event.event_id
    assert relay_pending(warehouse, redis_client) == []
    assert [fields["event_id"] for _id, fields in redis_client.xrange(STREAM_KEY)] == [result.event.event_id]
    [event] = M13Consumer(warehouse, redis_client).poll()
    assert event.event_id == result.event.event_id


def test_crash_between_xadd_and_mark_does_not_add_the_event_twice(warehouse, redis_client):
    result = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    # As if the process died after XADD but before the published mark committed.
    with warehouse.begin() as connection:
        connection.execute(event_outbox.update().values(published_at=None, stream_id=None))
    [again] = relay_pending(warehouse, redis_client)
    [(stream_id, fields)] = redis_client.xrange(STREAM_KEY)
    assert fields["event_id"] == result.event.event_id
    assert again.stream_id == stream_id == result.stream_id  # the recorded id, not a new entry
    [row] = _outbox_rows(warehouse)
    assert row.stream_id == stream_id and row.published_at is not None

    consumer = M13Consumer(warehouse, redis_client, consumer_name="m13-a")
    [event] = consumer.poll()
    assert consumer.ack(event) is True
    assert consumer.poll() == []
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0
    assert unconsumed_events(warehouse, redis_client, now=_real_now() + dt.timedelta(hours=1)) == []


def test_an_event_consumed_before_the_retried_relay_is_not_sent_again(warehouse, redis_client):
    publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    with warehouse.begin() as connection:
        connection.execute(event_outbox.update().values(published_at=None, stream_id=None))
    consumer = M13Consumer(warehouse, redis_client)
    [event] = consumer.poll()
    consumer.ack(event)
    assert relay_pending(warehouse, redis_client) == []
    assert redis_client.xlen(STREAM_KEY) == 1


def test_force_republish_is_delivered_again(warehouse, redis_client):
    first = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    consumer = M13Consumer(warehouse, redis_client)
    [event] = consumer.poll()
    consumer.ack(event)
    forced = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client, force=True)
    assert forced.created and forced.stream_id and forced.event.event_id != first.event.event_id
    [again] = consumer.poll()
    assert again.event_id == forced.event.event_id and again.trade_date == "2024-12-24"


def test_consumer_group_read_and_ack_sets_consumed_at(warehouse, redis_client):
    published = publish_signals_ready(
        warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client, now=AT_1645_TAIPEI
    )
    consumer = M13Consumer(warehouse, redis_client, consumer_name="m13-a")
    [event] = consumer.poll()
    assert (event.event_id, event.event_type, event.trade_date, event.stream_id) == (
        published.event.event_id,
        "STRATEGY_SIGNALS_READY",
        "2024-12-24",
        published.stream_id,
    )
    assert event.payload == published.event.payload
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 1
    # Not acked yet: a restarted consumer gets its own pending entry again.
    assert [e.event_id for e in M13Consumer(warehouse, redis_client, consumer_name="m13-a").poll()] == [event.event_id]
    acked_at = AT_1645_TAIPEI + dt.timedelta(minutes=2)
    assert consumer.ack(event, now=acked_at) is True
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0
    [row] = _outbox_rows(warehouse)
    assert as_utc(row.consumed_at) == acked_at and row.consumer == "m13-a"
    assert consumer.poll() == []


def test_an_entry_left_pending_by_a_dead_consumer_is_claimed_after_the_idle_time(warehouse, redis_client):
    published = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    [taken] = M13Consumer(warehouse, redis_client, consumer_name="m13-dead").poll()  # ... and never acked
    # A live consumer leaves it alone while the owner may still be working on it,
    assert M13Consumer(warehouse, redis_client, consumer_name="m13-live").poll() == []
    # and takes it over once it has been idle for claim_idle_ms.
    time.sleep(0.05)
    live = M13Consumer(warehouse, redis_client, consumer_name="m13-live", claim_idle_ms=20)
    [claimed] = live.poll()
    assert (claimed.event_id, claimed.stream_id) == (taken.event_id, published.stream_id)
    pending = redis_client.xpending_range(STREAM_KEY, M13_GROUP, min="-", max="+", count=10)
    assert [as_text(p["consumer"]) for p in pending] == ["m13-live"]
    assert live.ack(claimed) is True
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0
    assert live.poll() == [] and M13Consumer(warehouse, redis_client, consumer_name="m13-dead").poll() == []


def test_a_redis_without_xautoclaim_still_delivers(warehouse, redis_client, monkeypatch):
    publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)

    def too_old(*args, **kwargs):
        raise redis.ResponseError("ERR unknown command 'XAUTOCLAIM', with args beginning with: ")

    monkeypatch.setattr(redis_client, "xautoclaim", too_old)
    consumer = M13Consumer(warehouse, redis_client, consumer_name="m13-old")
    [event] = consumer.poll()
    assert event.trade_date == "2024-12-24" and consumer.claim_idle_ms is None


def test_redis_only_consumer_without_warehouse(warehouse, redis_client):
    publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    consumer = M13Consumer(redis=redis_client, consumer_name="m13-b")
    [event] = consumer.poll(block_ms=100)
    assert consumer.ack(event) is True
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0
    assert _outbox_rows(warehouse)[0].consumed_at is None  # no warehouse access: the stream is the truth


def test_redis_lag_undelivered_then_pending_then_acked(warehouse, redis_client):
    published = publish_signals_ready(warehouse, "2024-12-24", SUMMARY, backend="redis", redis=redis_client)
    now = _real_now()
    assert unconsumed_events(warehouse, redis_client, now=now + dt.timedelta(minutes=10)) == []
    [late] = unconsumed_events(warehouse, redis_client, now=now + dt.timedelta(minutes=31))
    assert (late.event_id, late.trade_date, late.where, late.stream_id) == (
        published.event.event_id,
        "2024-12-24",
        "stream-undelivered",
        published.stream_id,
    )
    assert 30.9 <= late.age_minutes <= 31.5

    consumer = M13Consumer(warehouse, redis_client, consumer_name="m13-a")
    [event] = consumer.poll()  # delivered, never acknowledged
    [late] = unconsumed_events(warehouse, redis_client, now=now + dt.timedelta(minutes=45))
    assert (late.event_id, late.where, late.consumer, late.times_delivered) == (
        published.event.event_id,
        "stream-pending",
        "m13-a",
        1,
    )
    assert 44.9 <= late.age_minutes <= 45.5
    consumer.ack(event)
    assert unconsumed_events(warehouse, redis_client, now=now + dt.timedelta(hours=3)) == []


def test_redis_lag_lists_every_late_event_oldest_first(warehouse, redis_client):
    for day in ("2024-12-23", "2024-12-24"):
        publish_signals_ready(warehouse, day, SUMMARY, backend="redis", redis=redis_client)
    consumer = M13Consumer(warehouse, redis_client)
    consumer.poll(count=1)  # takes 2024-12-23 and leaves it pending; 2024-12-24 stays undelivered
    late = unconsumed_events(warehouse, redis_client, now=_real_now() + dt.timedelta(minutes=40))
    assert [(item.trade_date, item.where) for item in late] == [
        ("2024-12-23", "stream-pending"),
        ("2024-12-24", "stream-undelivered"),
    ]
    assert late[0].age_minutes >= late[1].age_minutes


def test_lag_on_an_empty_stream(warehouse, redis_client):
    assert unconsumed_events(warehouse, redis_client, now=_real_now()) == []
    ensure_consumer_group(redis_client)
    assert unconsumed_events(warehouse, redis_client, now=_real_now()) == []


# --------------------------------------------------------------------------------------------- resource


def test_resource_backend_from_environment(warehouse, redis_url, redis_client, monkeypatch):
    monkeypatch.delenv("QRL_EVENT_BUS", raising=False)
    assert configured_resources()["event_bus"].resolved_backend() == "outbox"
    monkeypatch.setenv("QRL_EVENT_BUS", "kafka")
    with pytest.raises(
        EventBusError, match=r"unknown event bus backend 'kafka' \(QRL_EVENT_BUS\): choose one of outbox, redis"
    ):
        configured_resources()["event_bus"].publish_signals_ready(warehouse, "2024-12-24", SUMMARY)
    assert _outbox_rows(warehouse) == []

    monkeypatch.setenv("QRL_EVENT_BUS", "redis")
    monkeypatch.delenv("QRL_REDIS_URL", raising=False)
    with pytest.raises(EventBusError, match="QRL_EVENT_BUS=redis but Redis is not configured: set QRL_REDIS_URL"):
        configured_resources()["event_bus"].publish_signals_ready(warehouse, "2024-12-24", SUMMARY)

    monkeypatch.setenv("QRL_REDIS_URL", redis_url)
    bus = configured_resources()["event_bus"]
    result = bus.publish_signals_ready(warehouse, "2024-12-24", SUMMARY)
    assert result.backend == "redis" and result.stream_id
    assert redis_client.xlen(STREAM_KEY) == 1
    assert bus.relay(warehouse) == []
    assert bus.unconsumed(warehouse, now=_real_now() + dt.timedelta(minutes=31))[0].where == "stream-undelivered"


def test_resource_outbox_backend_and_explicit_config(warehouse, redis_client, monkeypatch):
    monkeypatch.setenv("QRL_EVENT_BUS", "redis")
    bus = configured_resources(event_bus="outbox")["event_bus"]  # a replaced setting wins over the environment
    result = bus.publish_signals_ready(warehouse, "2024-12-24", SUMMARY, now=AT_1645_TAIPEI)
    assert result.backend == "outbox" and result.stream_id is None
    assert bus.relay(warehouse) == []
    assert [e.where for e in bus.unconsumed(warehouse, now=AT_1645_TAIPEI + dt.timedelta(minutes=31))] == ["outbox"]
    # The transactional form: the caller's connection, relay after the commit.
    redis_bus = configured_resources(event_bus="redis")["event_bus"]
    with warehouse.begin() as connection:
        event = redis_bus.record_signals_ready(connection, "2024-12-25", SUMMARY)
    relayed = redis_bus.relay(warehouse, redis_client)
    # The 2024-12-24 row written in outbox mode was never consumed, so switching to Redis relays it too.
    assert [item.trade_date for item in relayed] == [dt.date(2024, 12, 24), dt.date(2024, 12, 25)]
    assert relayed[1].event_id == event.event_id
