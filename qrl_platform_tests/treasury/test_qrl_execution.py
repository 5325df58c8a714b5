"""Execution guards and idempotent order placement, against the fake MEXC and the paper account."""

import datetime as dt
from dataclasses import replace
from decimal import Decimal as D

import pytest

from qrl_platform.treasury.execution import (
    BLOCKED,
    NOT_EXECUTED,
    PLACED,
    REJECTED,
    UNKNOWN,
    ExecutionLimits,
    PastOrder,
    client_order_id,
    execute_plan,
)
from qrl_platform.treasury.mexc_client import ClientSettings, MexcClient, parse_balances, parse_symbol_rules
from qrl_platform.treasury.rebalance import RebalanceParams, plan_rebalance
from qrl_platform.treasury.simulated import PaperAccount, PaperExchange, SimulatedMarket

KEY = "2026-11-22-07:45"
END = dt.datetime(2026, 11, 22, 8, 0, tzinfo=dt.UTC)
NOW = END + dt.timedelta(minutes=1)
ON = ExecutionLimits(
    enabled=True,
    daily_trade_cap=2,
    min_interval=dt.timedelta(minutes=30),
    max_order_notional=D("100"),
    max_drawdown=D("0.2"),
)


@pytest.fixture
def client(fake):
    with MexcClient(
        ClientSettings(base_url=fake.url, min_request_interval_seconds=0, backoff_seconds=0.01, max_retries=1),
        api_key=fake.api_key,
        api_secret=fake.api_secret,
    ) as signed_client:
        yield signed_client


def make_plan(exchange, *, max_notional="100"):
    rules = parse_symbol_rules(exchange.exchange_info("QRLUSDT"), "QRLUSDT")
    balances = parse_balances(exchange.account(), "QRL", "USDT")
    price = D(exchange.ticker_price("QRLUSDT")["price"])
    plan = plan_rebalance(
        symbol="QRLUSDT",
        price=price,
        balances=balances,
        rules=rules,
        params=RebalanceParams(max_order_notional=D(max_notional)),
        timestamp=NOW,
    )
    return plan, rules


def run(exchange, plan, rules, limits=ON, *, key=KEY, past=(), peak=None, previous=None, now=NOW):
    return execute_plan(
        exchange,
        plan,
        rules,
        limits,
        account="live",
        partition_key=key,
        partition_end=END,
        now=now,
        past_orders=list(past),
        peak_total_value=peak,
        previous=previous,
    )


def test_client_order_id_depends_on_partition_not_on_price_or_quantity():
    first = client_order_id(account="live", symbol="QRLUSDT", partition_key=KEY)
    assert first == client_order_id(account="live", symbol="QRLUSDT", partition_key=KEY)
    assert first.startswith("qrl-202611220745-") and len(first) <= 32
    assert first != client_order_id(account="live", symbol="QRLUSDT", partition_key="2026-11-22-08:00")
    assert first != client_order_id(account="paper", symbol="QRLUSDT", partition_key=KEY)


def test_off_by_default_places_nothing(fake, client):
    plan, rules = make_plan(client)
    assert plan.action == "SELL"
    outcome = run(client, plan, rules, ExecutionLimits())
    assert outcome.order_status == NOT_EXECUTED and "QRL_EXECUTE_ORDERS=false" in outcome.order_message
    assert fake.test_orders == [] and fake.orders == {}


def test_enabled_tests_the_order_first_then_places_it_once(fake, client):
    plan, rules = make_plan(client)  # 1000 QRL @0.5 + 300 USDT → SELL 200 QRL, capped at 100 USDT → 200
    outcome = run(client, plan, rules)
    assert outcome.order_status == PLACED and outcome.order_id
    posts = [call["path"] for call in fake.requests if call["method"] == "POST"]
    assert posts == ["/api/v3/order/test", "/api/v3/order"]
    assert fake.test_orders[0]["newClientOrderId"] == outcome.client_order_id
    assert fake.test_orders[0]["quantity"] == "200.00" and fake.test_orders[0]["type"] == "MARKET"

    # A retried run of the same partition, after the price moved: same client id, no second order.
    fake.price = D("0.45")
    retry_plan, _ = make_plan(client)
    again = run(client, retry_plan, rules)
    assert again.order_status == PLACED and "not placed again" in again.order_message
    assert again.client_order_id == outcome.client_order_id
    assert len(fake.orders) == 1
    # Even when the warehouse says nothing (e.g. the row write was lost), the exchange lookup stops it.
    assert run(client, retry_plan, rules, previous=None).order_status == PLACED
    assert len([c for c in fake.requests if c["method"] == "POST" and c["path"] == "/api/v3/order"]) == 1


def test_daily_cap_minimum_interval_and_kill_switch_block(fake, client):
    plan, rules = make_plan(client)
    early = PastOrder("2026-11-22-01:00", "a", END - dt.timedelta(hours=6), PLACED)
    recent = PastOrder("2026-11-22-07:30", "b", NOW - dt.timedelta(minutes=10), PLACED)
    capped = run(client, plan, rules, past=[early, replace(early, partition_key="2026-11-22-02:00")])
    assert capped.order_status == BLOCKED and "daily trade cap reached (2 of 2" in capped.order_message
    too_soon = run(client, plan, rules, past=[recent])
    assert too_soon.order_status == BLOCKED and "minimum interval" in too_soon.order_message
    unknown_counts = run(client, plan, rules, past=[replace(recent, status=UNKNOWN)])
    assert unknown_counts.order_status == BLOCKED
    yesterday = replace(early, executed_at=END - dt.timedelta(days=1))
    assert run(client, plan, rules, past=[yesterday, yesterday], peak=D("2000")).order_status == BLOCKED
    killed = run(client, plan, rules, peak=D("1100"))  # total 800 vs peak 1100: −27 %
    assert killed.order_status == BLOCKED and killed.order_message.startswith("kill switch: total value 800.00")
    assert fake.test_orders == [] and fake.orders == {}
    assert run(client, plan, rules, past=[yesterday], peak=D("900")).order_status == PLACED


def test_stale_plan_and_disabled_market_orders_block(fake, client):
    plan, rules = make_plan(client)
    stale = run(client, plan, rules, now=END + dt.timedelta(hours=2))
    assert stale.order_status == BLOCKED and "stale plan" in stale.order_message
    fake.market_orders_enabled = False
    plan, rules = make_plan(client)
    disabled = run(client, plan, rules)
    assert disabled.order_status == BLOCKED and "market orders are disabled for QRLUSDT" in disabled.order_message
    fake.market_orders_enabled, fake.symbol_status = True, "2"
    plan, rules = make_plan(client)
    assert "is not trading (status 2" in run(client, plan, rules).order_message
    assert fake.orders == {}


def test_exchange_refusal_becomes_rejected_with_the_mapped_message(fake, client):
    plan, rules = make_plan(client)
    fake.inject("/api/v3/order/test", "code", code=30019, msg="market order is disabled")
    outcome = run(client, plan, rules)
    assert outcome.order_status == REJECTED
    assert "order/test refused" in outcome.order_message and "market orders are disabled" in outcome.order_message
    assert fake.orders == {}


def test_lost_order_answer_is_reconciled_and_unknown_outcome_is_reported(fake, client):
    plan, rules = make_plan(client)
    fake.inject("/api/v3/order", "500_after", method="POST")
    assert run(client, plan, rules).order_status == PLACED
    assert len(fake.orders) == 1
    fake.inject("/api/v3/order", "500", method="POST")
    other = run(client, plan, rules, key="2026-11-22-08:00")
    assert other.order_status == UNKNOWN and "not found afterwards" in other.order_message
    assert len(fake.orders) == 1


def test_paper_exchange_fills_change_balances_and_are_idempotent(tmp_path):
    account = PaperAccount(
        tmp_path / "paper.json",
        symbol="QRLUSDT",
        base_asset="QRL",
        quote_asset="USDT",
        initial_base=D("1000"),
        initial_quote=D("100"),
    )
    opening = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    exchange = PaperExchange(mode="simulated", market=SimulatedMarket(END), account=account, at=END, opening=opening)
    plan, rules = make_plan(exchange)
    assert plan.action == "SELL"
    outcome = run(exchange, plan, rules)
    assert outcome.order_status == PLACED
    after = parse_balances(exchange.account(), "QRL", "USDT")
    assert after.base_free == D("1000") - plan.quantity
    assert after.quote_free > D("100")
    trades = exchange.my_trades("QRLUSDT")
    assert [t["orderId"] for t in trades] == ["opening-balance", outcome.order_id]
    assert run(exchange, plan, rules).order_status == PLACED  # retry: found by client order id
    assert parse_balances(exchange.account(), "QRL", "USDT") == after


def _row(key, *, status, message="", total=1000.0, created=NOW, coid=None):
    return {
        "partition_key": key,
        "symbol": "QRLUSDT",
        "order_status": status,
        "order_message": message,
        "total_value": total,
        "created_at": created,
        "executed_at": created if status in (PLACED, UNKNOWN) else None,
        "client_order_id": coid,
        "order_id": None,
    }


def test_kill_switch_stays_tripped_after_recovery_until_reset(fake, client):
    from qrl_platform.treasury.execution import guard_history

    tripped_at = NOW - dt.timedelta(hours=2)
    rows = [
        _row("2026-11-22-05:00", status=PLACED, total=1100.0, created=NOW - dt.timedelta(hours=3)),
        _row(
            "2026-11-22-05:45",
            status=BLOCKED,
            message="kill switch: total value 800.00 is 27.3% below",
            created=tripped_at,
        ),
        _row("2026-11-22-06:00", status=NOT_EXECUTED, total=1200.0, created=NOW - dt.timedelta(hours=1)),
    ]
    history = guard_history(rows, partition_key=KEY, kill_switch_reset_at=None)
    assert history.kill_switch == "tripped at 2026-11-22-05:45 (total value 800.00 is 27.3% below)"
    plan, rules = make_plan(client)  # total 800 now: the value alone would trip it anyway
    blocked = run(client, plan, rules, peak=None, previous=None)
    assert blocked.order_status == PLACED  # without the history nothing blocks (control)
    fake.orders.clear()
    latched = execute_plan(
        client, plan, rules, ON, account="live", partition_key="2026-11-22-08:00", partition_end=END, now=NOW,
        past_orders=[], peak_total_value=None, kill_switch=history.kill_switch,
    )  # fmt: skip
    assert latched.order_status == BLOCKED
    assert latched.order_message.startswith("kill switch: tripped at 2026-11-22-05:45")
    assert "QRL_KILL_SWITCH_RESET_AT" in latched.order_message
    # A reset after the trip releases it, and the peak forgets the plans before the reset.
    after_reset = guard_history(rows, partition_key=KEY, kill_switch_reset_at=tripped_at + dt.timedelta(minutes=1))
    assert after_reset.kill_switch is None and after_reset.peak_total_value == D("1200")
    # A reset before the trip does not.
    assert guard_history(rows, partition_key=KEY, kill_switch_reset_at=tripped_at - dt.timedelta(minutes=1)).kill_switch


def test_unknown_orders_are_looked_up_and_recorded_as_placed_when_found(fake, client):
    from qrl_platform.treasury.execution import reconcile_unknown_orders

    plan, rules = make_plan(client)
    coid = client_order_id(account="live", symbol="QRLUSDT", partition_key=KEY)
    # Placed, then the 4 lookups the client makes (2 tries × 2 attempts) all fail.
    fake.inject("/api/v3/order", "500_after", method="POST", outage=4)
    assert run(client, plan, rules).order_status == UNKNOWN
    missing = client_order_id(account="live", symbol="QRLUSDT", partition_key="2026-11-22-06:00")
    rows = [_row(KEY, status=UNKNOWN, coid=coid), _row("2026-11-22-06:00", status=UNKNOWN, coid=missing)]
    [found] = reconcile_unknown_orders(client, rows, now=NOW)
    assert found["partition_key"] == KEY and found["order_status"] == PLACED
    assert found["order_id"] == fake.orders[coid]["orderId"]
    assert "outcome was unknown; found on the exchange by client order id" in found["order_message"]
    assert len(fake.placed) == 1
