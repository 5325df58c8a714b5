"""The treasury's quarter-hour use cases without Dagster: `update_position` and `rebalance` over the
simulated exchange and the local MEXC server, a real warehouse and Redis, and a controlled clock."""

import contextlib
import datetime as dt
import json
from dataclasses import replace
from decimal import Decimal as D

import pytest
import redis

from qrl_platform.treasury import cycle
from qrl_platform.treasury.execution import NOT_EXECUTED, PLACED, UNKNOWN, ExecutionLimits
from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient
from qrl_platform.treasury.rebalance import REDIS_LATEST_KEY, RebalanceParams, stored_plan
from qrl_platform.treasury.simulated import SIMULATION_EPOCH, PaperAccount, PaperExchange, SimulatedMarket
from qrl_platform.warehouse import Warehouse

KEY = "2026-11-20-07:45"
WINDOW_START = dt.datetime(2026, 11, 20, 7, 45, tzinfo=dt.UTC)
WINDOW_END = WINDOW_START + dt.timedelta(minutes=15)
FAST_CLIENT = ClientSettings(timeout_seconds=1.0, backoff_seconds=0.01, max_retries=0, min_request_interval_seconds=0)


def config(mode: str = "simulated", *, base_url: str = "http://unused", execute: bool = False, **limits):
    return cycle.TreasuryConfig(
        mode=mode,
        base_url=base_url,
        symbol="QRLUSDT",
        base_asset="QRL",
        quote_asset="USDT",
        params=RebalanceParams(),
        fee_rate_override=None,
        limits=ExecutionLimits(enabled=execute, min_interval=dt.timedelta(0), **limits),
        client=replace(FAST_CLIENT, base_url=base_url),
        trades_since_ms=None,
    )


class SimulatedExchanges:
    """Opens the simulated exchange over one paper account file, counting how often it is opened."""

    def __init__(self, path, *, initial_usdt: str = "500"):
        self.path = path
        self.initial_usdt = D(initial_usdt)
        self.opened: list[dt.datetime] = []

    def __call__(self, now: dt.datetime):
        self.opened.append(now)
        account = PaperAccount(
            self.path,
            symbol="QRLUSDT",
            base_asset="QRL",
            quote_asset="USDT",
            initial_base=D("1000"),
            initial_quote=self.initial_usdt,
        )
        market = SimulatedMarket(WINDOW_END, seed=7)
        return PaperExchange(mode="simulated", market=market, account=account, at=WINDOW_END, opening=SIMULATION_EPOCH)


class RecordingPublisher:
    def __init__(self):
        self.published: list[tuple[str, object]] = []

    def __call__(self, write, payload) -> str:
        self.published.append((write.__name__, payload))
        return "recorded"


@pytest.fixture
def store(tmp_path):
    return Warehouse(f"sqlite:///{tmp_path / 'warehouse.sqlite'}")


def test_update_position_stores_and_publishes_the_simulated_opening_balance(tmp_path, store):
    exchanges = SimulatedExchanges(tmp_path / "paper.json")
    publish = RecordingPublisher()
    ports = cycle.Ports(open_exchange=exchanges, warehouse=store, publish=publish, clock=lambda: WINDOW_END)
    kwargs = dict(partition_key=KEY, window_start=WINDOW_START, window_end=WINDOW_END)
    result = cycle.update_position(config(), ports, **kwargs)
    assert result.row["position_qty"] == 1000.0 and result.row["partition_key"] == KEY
    assert result.trades_synced == 1  # the paper account's opening buy
    assert (result.rows_stored, result.redis) == (1, "recorded")
    assert publish.published == [("publish_position", result.row)]

    again = cycle.update_position(config(), ports, **kwargs)
    assert again.trades_synced == 0 and again.row == result.row
    assert store.read_table("qrl_positions").height == 1  # replaced, not duplicated


def test_rebalance_without_execution_plans_stores_and_publishes(tmp_path, store):
    exchanges = SimulatedExchanges(tmp_path / "paper.json")
    publish = RecordingPublisher()
    now = WINDOW_END + dt.timedelta(seconds=20)
    ports = cycle.Ports(open_exchange=exchanges, warehouse=store, publish=publish, clock=lambda: now)
    result = cycle.rebalance(config(), ports, partition_key=KEY, window_end=WINDOW_END)
    assert exchanges.opened == [now]
    assert result.order_status == NOT_EXECUTED and not result.outcome_unknown and not result.kept_executed_plan
    assert result.row["action"] in {"BUY", "SELL", "HOLD"}
    assert result.details["fee_rate"] == 0.001 and result.details["min_notional"] > 0
    assert publish.published == [("publish_plan", result.published)]
    assert result.published["partition_key"] == KEY
    assert stored_plan(store, KEY, "QRLUSDT")["order_status"] == NOT_EXECUTED


def test_a_placed_partition_is_not_planned_again(tmp_path, store):
    # All QRL and no USDT: the plan SELLs whatever the simulated price.
    exchanges = SimulatedExchanges(tmp_path / "paper.json", initial_usdt="0")
    now = WINDOW_END + dt.timedelta(minutes=1)  # fresh enough for the staleness guard
    ports = cycle.Ports(open_exchange=exchanges, warehouse=store, publish=cycle.publish_to(None), clock=lambda: now)
    first = cycle.rebalance(config(execute=True), ports, partition_key=KEY, window_end=WINDOW_END)
    assert (first.row["action"], first.order_status, first.redis) == ("SELL", PLACED, cycle.NOT_CONFIGURED)

    again = cycle.rebalance(config(execute=True), ports, partition_key=KEY, window_end=WINDOW_END)
    assert again.kept_executed_plan and again.order_status == PLACED
    assert again.row["client_order_id"] == first.row["client_order_id"]
    assert len(exchanges.opened) == 1  # the exchange was not even opened for the re-run
    assert store.read_table("rebalance_plans").height == 1


def test_an_unknown_order_is_stored_then_found_by_the_next_quarter_hour(store, fake, redis_url):
    """Live against the local MEXC server: the placement answers 500 after placing, the outcome is
    unknown and recorded; the next quarter hour looks the client order id up before planning."""
    fake.inject("/api/v3/order", "500_after", method="POST", outage=1)
    live = config("live", base_url=fake.url, execute=True)

    def open_live(now):
        return contextlib.closing(MexcClient(live.client, api_key=fake.api_key, api_secret=fake.api_secret))

    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    window_end = now - dt.timedelta(minutes=now.minute % 15)
    key = (window_end - dt.timedelta(minutes=15)).strftime("%Y-%m-%d-%H:%M")
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        client.flushall()
        ports = cycle.Ports(
            open_exchange=open_live, warehouse=store, publish=cycle.publish_to(client), clock=lambda: now
        )
        result = cycle.rebalance(live, ports, partition_key=key, window_end=window_end)
        assert result.order_status == UNKNOWN and result.outcome_unknown
        assert stored_plan(store, key, "QRLUSDT")["order_status"] == UNKNOWN  # recorded before failing
        assert json.loads(client.get(REDIS_LATEST_KEY))["order_status"] == UNKNOWN
        assert len(fake.orders) == 1  # the order exists on the exchange

        later_end = window_end + dt.timedelta(minutes=15)
        later_key = window_end.strftime("%Y-%m-%d-%H:%M")
        later = replace(ports, clock=lambda: later_end + dt.timedelta(seconds=30))
        cycle.rebalance(live, later, partition_key=later_key, window_end=later_end)
    finally:
        client.close()
    found = stored_plan(store, key, "QRLUSDT")
    assert found["order_status"] == PLACED  # the lookup found it
    assert [order["clientOrderId"] for order in fake.placed].count(found["client_order_id"]) == 1  # placed once
