"""The Redis layout on a real Redis server, and the warehouse audit rows on SQLite and PostgreSQL."""

import datetime as dt
import json
from decimal import Decimal as D

import pytest
import redis

from qrl_platform.treasury.cost import REDIS_POSITION_KEY, publish_position
from qrl_platform.treasury.mexc_client import parse_symbol_rules
from qrl_platform.treasury.rebalance import (
    REDIS_HISTORY_KEY,
    REDIS_LATEST_KEY,
    Balances,
    RebalanceParams,
    plan_rebalance,
    plan_row,
    publish_plan,
    recent_plans,
    store_plan,
    stored_plan,
)
from qrl_platform.treasury.simulated import SIMULATED_EXCHANGE_INFO
from qrl_platform_tests.treasury.spec import SPEC_PLAN_FIELDS

START = dt.datetime(2026, 11, 22, tzinfo=dt.UTC)
RULES = parse_symbol_rules(SIMULATED_EXCHANGE_INFO, "QRLUSDT")


def key_at(index: int) -> str:
    return (START + dt.timedelta(minutes=15 * index)).strftime("%Y-%m-%d-%H:%M")


def plan_json(index: int, price: str = "0.5") -> dict:
    plan = plan_rebalance(
        symbol="QRLUSDT",
        price=D(price),
        balances=Balances(D("1000"), D(0), D("300"), D(0)),
        rules=RULES,
        params=RebalanceParams(),
        timestamp=START + dt.timedelta(minutes=15 * index),
    )
    return {**plan.to_json_dict(), "partition_key": key_at(index), "mode": "simulated"}


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url, decode_responses=True)
    yield connection
    connection.close()


def history_keys(client) -> list[str]:
    return [json.loads(entry)["partition_key"] for entry in client.lrange(REDIS_HISTORY_KEY, 0, -1)]


def test_latest_json_and_history_bounded_to_50_newest_first(client):
    for index in range(60):
        publish_plan(client, plan_json(index))
    assert client.llen(REDIS_HISTORY_KEY) == 50
    assert history_keys(client) == [key_at(index) for index in range(59, 9, -1)]
    latest = json.loads(client.get(REDIS_LATEST_KEY))
    assert latest["partition_key"] == key_at(59)
    for field in SPEC_PLAN_FIELDS:
        assert field in latest
    assert latest["action"] == "SELL" and latest["reason"] == "QRL above target"


def test_rematerialising_a_partition_replaces_its_history_entry_instead_of_duplicating(client):
    for index in range(5):
        publish_plan(client, plan_json(index))
    outcome = publish_plan(client, plan_json(4, price="0.6"))
    assert "replaced existing entry" in outcome["redis"]
    assert history_keys(client) == [key_at(i) for i in (4, 3, 2, 1, 0)]
    assert json.loads(client.lindex(REDIS_HISTORY_KEY, 0))["price"] == 0.6
    assert json.loads(client.get(REDIS_LATEST_KEY))["price"] == 0.6
    publish_plan(client, plan_json(2, price="0.7"))  # an older partition re-run: in place, latest unchanged
    assert history_keys(client) == [key_at(i) for i in (4, 3, 2, 1, 0)]
    assert json.loads(client.get(REDIS_LATEST_KEY))["partition_key"] == key_at(4)


def test_backfilled_partitions_keep_the_history_ordered_and_latest_forward(client):
    for index in (10, 12, 14):
        publish_plan(client, plan_json(index))
    publish_plan(client, plan_json(11))
    assert history_keys(client) == [key_at(i) for i in (14, 12, 11, 10)]
    assert json.loads(client.get(REDIS_LATEST_KEY))["partition_key"] == key_at(14)
    for index in range(100, 150):
        publish_plan(client, plan_json(index))
    outcome = publish_plan(client, plan_json(3))  # older than the whole retained window
    assert "not added" in outcome["redis"]
    assert client.llen(REDIS_HISTORY_KEY) == 50 and key_at(3) not in history_keys(client)


def test_position_hash_is_written_whole_and_only_moves_forward(client):
    row = {
        "partition_key": key_at(5),
        "symbol": "QRLUSDT",
        "mode": "live",
        "as_of": START,
        "price": 0.5,
        "position_qty": 10.0,
        "avg_cost": None,
        "invested": 0.0,
        "realized_pnl": 1.5,
        "unrealized_pnl": None,
        "fees_usdt": 0.01,
        "trades_count": 3,
    }
    publish_position(client, row)
    stored = client.hgetall(REDIS_POSITION_KEY)
    assert stored["position_qty"] == "10.0" and stored["avg_cost"] == "" and stored["as_of"] == START.isoformat()
    outcome = publish_position(client, {**row, "partition_key": key_at(4), "position_qty": 99.0})
    assert "kept at newer partition" in outcome["redis"]
    assert client.hget(REDIS_POSITION_KEY, "position_qty") == "10.0"


def test_warehouse_audit_row_is_replaced_per_partition(warehouse):
    plan = plan_rebalance(
        symbol="QRLUSDT",
        price=D("0.5"),
        balances=Balances(D("1000"), D(0), D("300"), D(0)),
        rules=RULES,
        params=RebalanceParams(),
        timestamp=START,
    )
    execution = {"order_status": "NOT_EXECUTED", "order_message": "execution disabled"}
    store_plan(warehouse, plan_row(plan, partition_key=key_at(0), mode="live", execution=execution, created_at=START))
    store_plan(warehouse, plan_row(plan, partition_key=key_at(0), mode="live", execution=execution, created_at=START))
    store_plan(warehouse, plan_row(plan, partition_key=key_at(1), mode="paper", execution=execution, created_at=START))
    frame = warehouse.read_table("rebalance_plans")
    assert frame.height == 2
    row = stored_plan(warehouse, key_at(0), "QRLUSDT")
    assert row["action"] == "SELL" and row["quantity"] == 200.0 and row["notional_usdt"] == 100.0
    assert row["reason"] == "QRL above target" and row["mode"] == "live"
    assert [
        r["partition_key"]
        for r in recent_plans(warehouse, symbol="QRLUSDT", mode="live", since=START - dt.timedelta(days=1))
    ] == [key_at(0)]
