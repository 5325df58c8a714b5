"""Operating delivery to the order module on a real Redis (and both warehouses): poison entries go to the dead-letter
stream with an alert, XAUTOCLAIM continues from its cursor, the consumer group is created once, and an
acknowledged day's signals carry consumed_at."""

import datetime as dt
import time

import pytest
import redis
import sqlalchemy as sa

from qrl_platform.alerts.channels import SlackChannel
from qrl_platform.notify.outbox import as_utc, mark_consumed
from qrl_platform.notify.relay import M13_GROUP, STREAM_KEY, ensure_consumer_group, publish_signals_ready
from qrl_platform.notify.summary import unconsumed_signal_summary
from qrl_platform.warehouse.schema import event_outbox, strategy_signals
from qrl_platform_tests.alerts.local_servers import WebhookServer
from qrl_platform_tests.notify.m13_consumer import (
    DEAD_LETTER_STREAM,
    DEFAULT_MAX_DELIVERIES,
    M13Consumer,
    dead_letter_alerter,
)

SUMMARY = {"total_signals": 3, "buy_signals": 1, "sell_signals": 1, "hold_signals": 1, "strategies_executed": 1}
DAY, OTHER_DAY = dt.date(2024, 12, 24), dt.date(2024, 12, 23)
AT = dt.datetime(2024, 12, 24, 8, 45, tzinfo=dt.UTC)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def _xgroup_creates(client) -> int:
    return int(client.info("commandstats").get("cmdstat_xgroup|create", {}).get("calls", 0))


# ------------------------------------------------------------------------------------------ dead letter
def test_a_poison_entry_is_dead_lettered_after_max_deliveries_with_an_alert(warehouse, redis_client):
    published = publish_signals_ready(warehouse, DAY, SUMMARY, backend="redis", redis=redis_client, now=AT)
    with WebhookServer() as slack:
        consumer = M13Consumer(
            warehouse,
            redis_client,
            consumer_name="m13-a",
            on_dead_letter=dead_letter_alerter([SlackChannel(slack.url("/x"))]),
        )
        deliveries = 0
        for _ in range(DEFAULT_MAX_DELIVERIES + 3):
            events = consumer.poll()
            deliveries += len(events)  # the order module fails on the event every time: never acknowledged
        requests = list(slack.requests)

    # Delivered exactly max_deliveries (default 5) times, then moved instead of a sixth delivery.
    assert DEFAULT_MAX_DELIVERIES == 5 and deliveries == 5
    assert redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0
    [(dead_id, fields)] = redis_client.xrange(DEAD_LETTER_STREAM)
    assert fields["event_id"] == published.event.event_id and fields["stream_id"] == published.stream_id
    assert (fields["times_delivered"], fields["consumer"], fields["trade_date"]) == ("6", "m13-a", "2024-12-24")
    assert fields["payload"] == redis_client.xrange(STREAM_KEY)[0][1]["payload"]  # the whole entry, unchanged
    [dead] = consumer.dead_letters
    assert (dead.dead_letter_id, dead.times_delivered) == (dead_id, 6)
    # One ERROR alert reached the local Slack server, naming the day, the event and where it went.
    assert len(requests) == 1
    text = requests[0].json["text"]
    assert "[ERROR] M13 event for 2024-12-24 dead-lettered after 6 deliveries" in text
    assert published.event.event_id in text and DEAD_LETTER_STREAM in text
    # Not handled, so not consumed: the outbox row (and the day's signals) stay unconsumed.
    with warehouse.begin() as conn:
        assert conn.execute(sa.select(event_outbox.c.consumed_at)).scalar_one() is None
    # A fresh consumer does not see it again.
    assert M13Consumer(warehouse, redis_client, consumer_name="m13-b").poll() == []


def test_max_deliveries_is_configurable_and_counts_claims_too(warehouse, redis_client):
    publish_signals_ready(warehouse, DAY, SUMMARY, backend="redis", redis=redis_client, now=AT)
    assert len(M13Consumer(warehouse, redis_client, consumer_name="dead").poll()) == 1  # delivery 1, then it dies
    time.sleep(0.02)
    live = M13Consumer(warehouse, redis_client, consumer_name="live", claim_idle_ms=1, max_deliveries=2)
    assert len(live.poll()) == 1  # claimed: delivery 2
    assert live.poll() == []  # own pending re-read would be delivery 3 > 2: dead-lettered
    assert [d.times_delivered for d in live.dead_letters] == [3]
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 1
    with pytest.raises(ValueError, match="max_deliveries must be an integer >= 1, got 0"):
        M13Consumer(warehouse, redis_client, max_deliveries=0)


def test_a_failing_alert_callback_does_not_lose_the_dead_letter(warehouse, redis_client):
    publish_signals_ready(warehouse, DAY, SUMMARY, backend="redis", redis=redis_client, now=AT)

    def broken(dead):
        raise RuntimeError("alerting is down")

    consumer = M13Consumer(warehouse, redis_client, max_deliveries=1, on_dead_letter=broken)
    assert len(consumer.poll()) == 1 and consumer.poll() == []
    assert redis_client.xlen(DEAD_LETTER_STREAM) == 1 and redis_client.xpending(STREAM_KEY, M13_GROUP)["pending"] == 0


# ------------------------------------------------------------------------------------------ XAUTOCLAIM
def test_xautoclaim_continues_from_its_cursor(redis_client, monkeypatch):
    ids = [
        redis_client.xadd(STREAM_KEY, {"event_id": f"e{i:02d}", "event_type": "T", "trade_date": ""}) for i in range(25)
    ]
    ensure_consumer_group(redis_client)
    assert len(M13Consumer(redis=redis_client, consumer_name="dead").poll(count=25)) == 25  # never acked
    starts: list[str] = []
    real = redis_client.xautoclaim

    def recording(*args, **kwargs):
        starts.append(kwargs["start_id"])
        return real(*args, **kwargs)

    monkeypatch.setattr(redis_client, "xautoclaim", recording)
    time.sleep(0.02)
    live = M13Consumer(redis=redis_client, consumer_name="live", claim_idle_ms=1)
    batches = []
    for _ in range(3):
        batch = live.poll(count=10)
        batches.append([e.stream_id for e in batch])
        for event in batch:
            live.ack(event)
    assert batches == [ids[0:10], ids[10:20], ids[20:25]]
    # The second and third claims continued where the previous one stopped; after the last one the
    # cursor is back at 0-0 (a full pass), so the next scan starts over.
    assert starts == ["0-0", ids[10], ids[20]]
    assert live.poll(count=10) == [] and starts[-1] == "0-0"


# ------------------------------------------------------------------------------------------ group creation
def test_the_consumer_group_is_created_once_not_on_every_poll(warehouse, redis_client):
    publish_signals_ready(warehouse, DAY, SUMMARY, backend="redis", redis=redis_client, now=AT)
    redis_client.config_resetstat()
    consumer = M13Consumer(warehouse, redis_client)
    for _ in range(5):
        for event in consumer.poll():
            consumer.ack(event)
    assert _xgroup_creates(redis_client) == 1
    # If the stream and its group vanish (Redis restarted without persistence), the next poll creates
    # them again instead of failing with NOGROUP.
    redis_client.delete(STREAM_KEY)
    assert consumer.poll() == [] and _xgroup_creates(redis_client) == 2
    assert [g["name"] for g in redis_client.xinfo_groups(STREAM_KEY)] == [M13_GROUP]


# ------------------------------------------------------------------------------------------ consumed_at
def _seed_signals(warehouse) -> None:
    rows = [
        ("s1", DAY, "BUY"),
        ("s2", DAY, "SELL"),
        ("s3", DAY, "HOLD"),
        ("s4", OTHER_DAY, "BUY"),
    ]
    with warehouse.begin() as conn:
        conn.execute(
            strategy_signals.insert(),
            [
                dict(
                    signal_id=sid,
                    strategy_id="STG_X",
                    stock_id="2330",
                    trade_date=day,
                    execution_id="ex",
                    signal=signal,
                    confidence=0.5,
                    score=0.5,
                    created_at=AT,
                )  # fmt: skip
                for sid, day, signal in rows
            ],
        )


def _consumed(warehouse) -> dict:
    with warehouse.begin() as conn:
        rows = conn.execute(sa.select(strategy_signals.c.signal_id, strategy_signals.c.consumed_at)).all()
    return {sid: as_utc(at) for sid, at in rows}


@pytest.mark.parametrize("mode", ["outbox", "redis"])
def test_acknowledging_a_days_event_sets_consumed_at_on_that_days_signals(warehouse, redis_client, mode):
    _seed_signals(warehouse)
    summary = unconsumed_signal_summary(warehouse, DAY)
    assert (summary["total_signals"], summary["buy_signals"], summary["sell_signals"]) == (3, 1, 1)
    client = redis_client if mode == "redis" else None
    publish_signals_ready(warehouse, DAY, summary, backend=mode, redis=client, now=AT)
    consumer = M13Consumer(warehouse, client, consumer_name="m13-a")
    [event] = consumer.poll()
    assert _consumed(warehouse) == {"s1": None, "s2": None, "s3": None, "s4": None}  # delivered, not acked
    acked_at = AT + dt.timedelta(minutes=3)
    assert consumer.ack(event, now=acked_at) is True
    # That day's signals are consumed with the outbox row's time; the other day's are not.
    assert _consumed(warehouse) == {"s1": acked_at, "s2": acked_at, "s3": acked_at, "s4": None}
    with warehouse.begin() as conn:
        assert as_utc(conn.execute(sa.select(event_outbox.c.consumed_at)).scalar_one()) == acked_at
    after = unconsumed_signal_summary(warehouse, DAY)
    assert (after["total_signals"], after["buy_signals"], after["sell_signals"], after["hold_signals"]) == (0, 0, 0, 0)
    # A second acknowledgement (another worker) changes nothing.
    assert mark_consumed(warehouse, event.event_id, "m13-b", now=acked_at + dt.timedelta(hours=1)) is False
    assert _consumed(warehouse)["s1"] == acked_at
