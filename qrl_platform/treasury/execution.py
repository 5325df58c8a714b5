"""Turning a plan into (at most) one order, behind guards. Off unless explicitly enabled.

Order of events for a BUY/SELL plan with execution on:
1. this partition already placed an order (warehouse row, or the exchange knows our client order
   id) → report that order, place nothing;
2. guards: symbol trading, market orders allowed, plan fresh, drawdown kill switch (latched: once
   tripped it stays on until reset), max notional, daily cap, minimum interval since the last
   order → BLOCKED with the reason;
3. `order/test` → REJECTED with MEXC's mapped message if the exchange would refuse;
4. `order` with `newClientOrderId` = client_order_id(symbol, partition, account) → PLACED.

The client order id depends only on the account, symbol and partition — not on the quantity or
price — because a retried run recomputes the plan at a new price: an id that included the
quantity would differ and the exchange could not recognise the retry as the same order.
No Dagster imports here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from qrl_platform.treasury.mexc_client import MexcError, MexcOutcomeUnknown, SpotExchange
from qrl_platform.treasury.rebalance import HOLD, RebalancePlan, SymbolRules

NOT_EXECUTED = "NOT_EXECUTED"  # execution disabled, or nothing to do (HOLD)
BLOCKED = "BLOCKED"  # a guard said no
REJECTED = "REJECTED"  # the exchange refused (order/test or order)
PLACED = "PLACED"
UNKNOWN = "UNKNOWN"  # 5xx / timeout on placement and the order could not be found afterwards
ORDER_ATTEMPTS = (PLACED, UNKNOWN)  # what counts towards the daily cap and the interval
KILL_SWITCH = "kill switch"  # how a BLOCKED message of the drawdown kill switch starts
RESET_VARIABLE = "QRL_KILL_SWITCH_RESET_AT"


@dataclass(frozen=True)
class ExecutionLimits:
    enabled: bool = False
    daily_trade_cap: int = 4
    min_interval: dt.timedelta = dt.timedelta(minutes=60)
    max_order_notional: Decimal = Decimal("100")
    max_drawdown: Decimal = Decimal("0.2")  # kill switch: stop when total value is this far below its peak
    max_plan_age: dt.timedelta = dt.timedelta(minutes=30)  # never trade on a backfilled, stale plan
    # The tripped kill switch stays on until an operator sets this to a time after the trip; plans
    # recorded before it no longer count towards the drawdown peak.
    kill_switch_reset_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        if self.daily_trade_cap < 0:
            raise ValueError(f"daily_trade_cap must be >= 0, got {self.daily_trade_cap}")
        if not Decimal(0) < self.max_drawdown <= Decimal(1):
            raise ValueError(f"max_drawdown must be within (0, 1], got {self.max_drawdown}")


@dataclass(frozen=True)
class PastOrder:
    partition_key: str
    client_order_id: str | None
    executed_at: dt.datetime
    status: str


@dataclass(frozen=True)
class ExecutionOutcome:
    order_status: str
    order_message: str
    client_order_id: str | None = None
    order_id: str | None = None
    executed_at: dt.datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def client_order_id(*, account: str, symbol: str, partition_key: str) -> str:
    """`qrl-<yyyymmddHHMM>-<10 hex>`: readable partition plus a hash of account|symbol|partition.

    Only [a-z0-9-], 27 characters — within every exchange's client-id alphabet and length limit.
    """
    stamp = "".join(char for char in partition_key if char.isdigit())
    digest = hashlib.sha256(f"{account}|{symbol}|{partition_key}".encode()).hexdigest()[:10]
    return f"qrl-{stamp}-{digest}"


def guard_reason(
    plan: RebalancePlan,
    rules: SymbolRules,
    limits: ExecutionLimits,
    *,
    partition_end: dt.datetime,
    now: dt.datetime,
    past_orders: Sequence[PastOrder],
    peak_total_value: Decimal | None,
    kill_switch: str | None = None,
) -> str | None:
    """Why this plan must not be executed now, or None when every guard passes.

    `kill_switch` describes an earlier trip since the last reset (see `guard_history`): it blocks even
    when the value has recovered since, because a drawdown that large needs a person to look first.
    """
    if not rules.trading:
        return f"{rules.symbol} is not trading (status {rules.status}, spot allowed {rules.spot_trading_allowed})"
    if not rules.market_orders_allowed:
        return f"market orders are disabled for {rules.symbol} (orderTypes {', '.join(rules.order_types) or 'none'})"
    age = now - partition_end
    if age > limits.max_plan_age:
        return f"stale plan: its partition ended {age} ago (> {limits.max_plan_age}); backfills never trade"
    if kill_switch:
        return f"{KILL_SWITCH}: {kill_switch}; stays on until {RESET_VARIABLE} is set to a time after the trip"
    if peak_total_value and plan.total_value is not None and peak_total_value > 0:
        drawdown = (peak_total_value - plan.total_value) / peak_total_value
        if drawdown >= limits.max_drawdown:
            return (
                f"{KILL_SWITCH}: total value {plan.total_value:.2f} is {drawdown:.1%} below its peak "
                f"{peak_total_value:.2f} (limit {limits.max_drawdown:.0%})"
            )
    if plan.notional_usdt > limits.max_order_notional:
        return f"notional {plan.notional_usdt:.4f} exceeds the max order notional {limits.max_order_notional}"
    attempts = [order for order in past_orders if order.status in ORDER_ATTEMPTS]
    today = [
        order for order in attempts if order.executed_at.astimezone(dt.UTC).date() == now.astimezone(dt.UTC).date()
    ]
    if len(today) >= limits.daily_trade_cap:
        return f"daily trade cap reached ({len(today)} of {limits.daily_trade_cap} today, UTC)"
    if attempts:
        last = max(order.executed_at for order in attempts)
        if now - last < limits.min_interval:
            return f"minimum interval: last order at {last.isoformat()}, next allowed after {limits.min_interval}"
    return None


def order_params(plan: RebalancePlan, rules: SymbolRules, coid: str) -> dict[str, str]:
    return {
        "symbol": rules.symbol,
        "side": plan.action,
        "type": "MARKET",
        "quantity": rules.format_qty(plan.quantity),
        "newClientOrderId": coid,
    }


def execute_plan(
    exchange: SpotExchange,
    plan: RebalancePlan,
    rules: SymbolRules,
    limits: ExecutionLimits,
    *,
    account: str,
    partition_key: str,
    partition_end: dt.datetime,
    now: dt.datetime,
    past_orders: Sequence[PastOrder],
    peak_total_value: Decimal | None,
    previous: Mapping[str, Any] | None = None,
    kill_switch: str | None = None,
) -> ExecutionOutcome:
    """Execute the plan if enabled and allowed; never places a second order for a partition.

    Exchange refusals (a MEXC error code) become REJECTED outcomes and the plan is still recorded.
    A placement whose outcome stays unknown after reconciliation becomes UNKNOWN: the caller records
    it and fails the run, and the retry looks the client order id up before doing anything else.
    Faults without an exchange answer (5xx/timeouts after retries) propagate and fail the run.
    """
    coid = client_order_id(account=account, symbol=rules.symbol, partition_key=partition_key)
    if previous and previous.get("order_status") == PLACED:
        # Checked before anything else: a re-run after the fill may now plan HOLD, or run with
        # execution switched off, and must still report (never forget) the order it placed.
        return ExecutionOutcome(
            PLACED,
            "already placed by an earlier run of this partition; not placed again",
            previous.get("client_order_id"),
            previous.get("order_id"),
            previous.get("executed_at"),
        )
    if not limits.enabled:
        return ExecutionOutcome(NOT_EXECUTED, "execution disabled (QRL_EXECUTE_ORDERS=false): plan only")
    if plan.action == HOLD:
        return ExecutionOutcome(NOT_EXECUTED, "HOLD: nothing to execute")

    existing = exchange.query_order(rules.symbol, coid)
    if existing is not None:
        return ExecutionOutcome(
            PLACED, "the exchange already has this partition's order; not placed again", coid, _order_id(existing), now
        )

    others = [order for order in past_orders if order.partition_key != partition_key]
    reason = guard_reason(
        plan,
        rules,
        limits,
        partition_end=partition_end,
        now=now,
        past_orders=others,
        peak_total_value=peak_total_value,
        kill_switch=kill_switch,
    )
    if reason:
        return ExecutionOutcome(BLOCKED, reason, coid)

    params = order_params(plan, rules, coid)
    try:
        exchange.test_order(params)
    except MexcError as exc:
        if exc.code is None:
            raise  # a fault (5xx, timeouts, bad JSON after retries), not a refusal: fail the run
        return ExecutionOutcome(REJECTED, f"order/test refused: {exc}", coid)
    try:
        placed = exchange.place_order(params)
    except MexcOutcomeUnknown as exc:
        return ExecutionOutcome(UNKNOWN, str(exc), coid, None, now)
    except MexcError as exc:
        if exc.code is None:
            raise
        return ExecutionOutcome(REJECTED, f"order refused: {exc}", coid)
    return ExecutionOutcome(
        PLACED,
        f"{plan.action} {params['quantity']} {rules.base_asset} market order placed",
        coid,
        _order_id(placed),
        now,
    )


def _order_id(order: Mapping[str, Any]) -> str | None:
    value = order.get("orderId") if isinstance(order, Mapping) else None
    return None if value in (None, "") else str(value)


def past_orders_from_rows(rows: Sequence[Mapping[str, Any]]) -> list[PastOrder]:
    """Orders recorded in `rebalance_plans` rows (PLACED or UNKNOWN, with when they were sent)."""
    orders = []
    for row in rows:
        if row.get("order_status") in ORDER_ATTEMPTS and row.get("executed_at") is not None:
            executed_at = row["executed_at"]
            if executed_at.tzinfo is None:  # SQLite returns naive datetimes; we only ever store UTC
                executed_at = executed_at.replace(tzinfo=dt.UTC)
            orders.append(PastOrder(row["partition_key"], row.get("client_order_id"), executed_at, row["order_status"]))
    return orders


def peak_total_value(rows: Sequence[Mapping[str, Any]]) -> Decimal | None:
    values = [Decimal(str(row["total_value"])) for row in rows if row.get("total_value") is not None]
    return max(values) if values else None


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value  # SQLite drops the zone; we store UTC


@dataclass(frozen=True)
class GuardHistory:
    """What the guards need from the account's recent plans (other partitions only)."""

    past_orders: list[PastOrder]
    peak_total_value: Decimal | None
    kill_switch: str | None  # the trip since the last reset, or None


def guard_history(
    rows: Sequence[Mapping[str, Any]], *, partition_key: str, kill_switch_reset_at: dt.datetime | None
) -> GuardHistory:
    """Past orders, the drawdown peak since the last reset, and whether the kill switch tripped since."""
    others = [row for row in rows if row["partition_key"] != partition_key]
    since_reset = [
        row for row in others if kill_switch_reset_at is None or _utc(row["created_at"]) >= _utc(kill_switch_reset_at)
    ]
    trips = [
        row
        for row in since_reset
        if row.get("order_status") == BLOCKED and str(row.get("order_message") or "").startswith(KILL_SWITCH)
    ]
    first = min(trips, key=lambda row: row["partition_key"]) if trips else None
    tripped = None
    if first is not None:
        cause = str(first["order_message"])[len(KILL_SWITCH) + 2 :].split("; stays on until")[0]
        tripped = cause if cause.startswith("tripped at") else f"tripped at {first['partition_key']} ({cause})"
    return GuardHistory(past_orders_from_rows(rows), peak_total_value(since_reset), tripped)


def reconcile_unknown_orders(
    exchange: SpotExchange, rows: Sequence[Mapping[str, Any]], *, now: dt.datetime
) -> list[dict[str, Any]]:
    """Look every UNKNOWN order of `rows` up by its client order id; the rows of those found, as PLACED.

    Runs before a quarter hour plans, so an order whose answer was lost counts as what it is (an
    order, with its id) and is reported. One not found stays UNKNOWN and keeps counting towards the
    daily cap and the interval: the exchange may still show it, and guessing "not placed" could
    let a second order through. A failed lookup propagates: the run must not plan blind.
    """
    found = []
    for row in rows:
        if row.get("order_status") != UNKNOWN or not row.get("client_order_id"):
            continue
        order = exchange.query_order(row["symbol"], row["client_order_id"])
        if order is None:
            continue
        found.append(
            {
                **row,
                "order_status": PLACED,
                "order_id": _order_id(order),
                "order_message": f"outcome was unknown; found on the exchange by client order id at "
                f"{now.isoformat()} (status {order.get('status', '?')}); not placed again",
            }
        )
    return found
