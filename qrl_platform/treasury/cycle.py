"""One quarter hour of the treasury, as two use cases the 15-minute assets call.

`update_position`: sync the account's trades → weighted-average cost and PnL at the quarter hour's end
→ store the row → publish it. `rebalance`: look up earlier unknown orders → plan against the exchange's
limits, balances and price → guard → execute (when enabled) → store the plan → publish it.

Both receive plain values (`TreasuryConfig`, the partition's key and window) and `Ports`: a way to
open the exchange (`SpotExchange`: the live client, the paper or the simulated exchange), the
warehouse, a Redis publisher and a clock. They return a result dataclass the caller turns into run
metadata.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from qrl_platform.treasury.cost import (
    Position,
    load_trades,
    position_at,
    publish_position,
    store_position,
    sync_trades,
)
from qrl_platform.treasury.execution import (
    PLACED,
    UNKNOWN,
    ExecutionLimits,
    execute_plan,
    guard_history,
    reconcile_unknown_orders,
)
from qrl_platform.treasury.mexc_client import (
    ClientSettings,
    SpotExchange,
    parse_balances,
    parse_price,
    parse_symbol_rules,
    taker_fee_rate,
)
from qrl_platform.treasury.rebalance import (
    RebalanceParams,
    plan_rebalance,
    plan_row,
    publish_plan,
    published_plan,
    recent_plans,
    store_plan,
    stored_plan,
)
from qrl_platform.warehouse import Warehouse

DEFAULT_FEE_RATE = Decimal("0.001")  # when the account reports no taker commission
GUARD_LOOKBACK = dt.timedelta(days=30)  # how far back the drawdown peak, daily cap and interval look
NOT_CONFIGURED = "not configured"


@dataclass(frozen=True)
class TreasuryConfig:
    """Everything the treasury runs with, secrets excluded (safe to show as run metadata)."""

    mode: str  # simulated | paper | live
    base_url: str
    symbol: str
    base_asset: str
    quote_asset: str
    params: RebalanceParams
    fee_rate_override: Decimal | None
    limits: ExecutionLimits
    client: ClientSettings
    trades_since_ms: int | None

    def metadata(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "symbol": self.symbol,
            "base_url": self.base_url if self.mode != "simulated" else "(offline)",
            "execute_orders": self.limits.enabled,
            "target_ratio": float(self.params.target_ratio),
            "threshold": float(self.params.threshold),
            "max_order_notional": float(self.limits.max_order_notional),
        }


class RedisPublisher(Protocol):
    """Writes `payload` to Redis with `write(client, payload)` and returns what it did (the `redis`
    entry of `write`'s answer), or `NOT_CONFIGURED` when there is no Redis."""

    def __call__(self, write: Callable[[Any, Any], Mapping[str, Any]], payload: Any) -> str: ...


def publish_to(client) -> RedisPublisher:
    """A publisher writing through one open Redis client (None: Redis is not configured)."""

    def publish(write, payload) -> str:
        return NOT_CONFIGURED if client is None else write(client, payload)["redis"]

    return publish


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Opens the exchange for one run; paper and live observe the market at the given moment.
OpenExchange = Callable[[dt.datetime], AbstractContextManager[SpotExchange]]


@dataclass(frozen=True)
class Ports:
    """What a quarter hour talks to: the exchange, the warehouse, Redis and the clock."""

    open_exchange: OpenExchange
    warehouse: Warehouse
    publish: RedisPublisher
    clock: Callable[[], dt.datetime] = utc_now


@dataclass(frozen=True)
class PositionResult:
    position: Position
    row: dict[str, Any]  # as stored in `qrl_positions` and published to `qrl:position`
    trades_synced: int
    rows_stored: int
    redis: str


def update_position(
    config: TreasuryConfig,
    ports: Ports,
    *,
    partition_key: str,
    window_start: dt.datetime,
    window_end: dt.datetime,
) -> PositionResult:
    """Sync new trades, value the position at the quarter hour's end, store and publish it."""
    warehouse = ports.warehouse
    with ports.open_exchange(ports.clock()) as exchange:
        synced = sync_trades(
            exchange, warehouse, account=config.mode, symbol=config.symbol, since_ms=config.trades_since_ms
        )
        price = parse_price(exchange.ticker_price(config.symbol), config.symbol)
    trades = load_trades(warehouse, account=config.mode, symbol=config.symbol)
    position = position_at(
        trades,
        partition_key=partition_key,
        symbol=config.symbol,
        mode=config.mode,
        as_of=window_end,
        day_start=dt.datetime.combine(window_start.date(), dt.time(), tzinfo=dt.UTC),
        price=price,
        base_asset=config.base_asset,
        quote_asset=config.quote_asset,
    )
    row = position.row()
    rows = store_position(warehouse, row)
    # Published after the warehouse row is stored: a Redis outage fails the step, and its retry
    # replaces the row rather than duplicating it.
    redis = ports.publish(publish_position, row)
    return PositionResult(position=position, row=row, trades_synced=synced.inserted, rows_stored=rows, redis=redis)


@dataclass(frozen=True)
class RebalanceResult:
    row: dict[str, Any]  # as stored in `rebalance_plans`
    published: dict[str, Any]  # as published to `qrl:rebalance:latest` / `qrl:rebalance:history`
    details: dict[str, Any]  # what the plan was made with (fee rate, exchange limits, locked balances)
    rows_stored: int
    redis: str
    kept_executed_plan: bool = False

    @property
    def order_status(self) -> str:
        return self.row["order_status"]

    @property
    def outcome_unknown(self) -> bool:
        """The order may or may not exist: the run must fail so its retry looks the order up first."""
        return self.order_status == UNKNOWN


def plan_and_execute(
    exchange: SpotExchange,
    config: TreasuryConfig,
    warehouse: Warehouse,
    *,
    partition_key: str,
    window_end: dt.datetime,
    now: dt.datetime,
    previous: dict | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan against the exchange's limits, balances and price, then execute if enabled and allowed.
    Returns the plan's warehouse row and the values it was planned with."""
    since = now - GUARD_LOOKBACK
    # An earlier run's unknown order is looked up first, so this quarter hour sees it before planning.
    for found in reconcile_unknown_orders(
        exchange, recent_plans(warehouse, symbol=config.symbol, mode=config.mode, since=since), now=now
    ):
        store_plan(warehouse, found)
    rules = parse_symbol_rules(exchange.exchange_info(config.symbol), config.symbol)
    account = exchange.account()
    balances = parse_balances(account, rules.base_asset, rules.quote_asset)
    price = parse_price(exchange.ticker_price(config.symbol), config.symbol)
    fee_rate = config.fee_rate_override or taker_fee_rate(account) or DEFAULT_FEE_RATE
    # Simulated prices belong to the partition's end; paper/live prices are observed now.
    observed_at = window_end if config.mode == "simulated" else now
    plan = plan_rebalance(
        symbol=config.symbol,
        price=price,
        balances=balances,
        rules=rules,
        params=replace(config.params, fee_rate=fee_rate),
        timestamp=observed_at,
    )
    history = recent_plans(warehouse, symbol=config.symbol, mode=config.mode, since=since)
    guards = guard_history(
        history, partition_key=partition_key, kill_switch_reset_at=config.limits.kill_switch_reset_at
    )
    outcome = execute_plan(
        exchange,
        plan,
        rules,
        config.limits,
        account=config.mode,
        partition_key=partition_key,
        partition_end=window_end,
        now=now,
        past_orders=guards.past_orders,
        peak_total_value=guards.peak_total_value,
        previous=previous,
        kill_switch=guards.kill_switch,
    )
    row = plan_row(plan, partition_key=partition_key, mode=config.mode, execution=outcome.as_dict(), created_at=now)
    details = {
        "qrl_locked": float(plan.qrl_locked),
        "usdt_locked": float(plan.usdt_locked),
        "fee_rate": float(fee_rate),
        "min_notional": float(rules.min_notional),
        "qty_step": float(rules.qty_step),
    }
    return row, details


def rebalance(config: TreasuryConfig, ports: Ports, *, partition_key: str, window_end: dt.datetime) -> RebalanceResult:
    """One quarter hour's rebalance: plan (and execute when enabled), store, publish.

    A partition whose order was already placed is not planned again: its executed plan is stored and
    published unchanged, because planning against the post-fill balances would trade a second time."""
    now = ports.clock()
    warehouse = ports.warehouse
    previous = stored_plan(warehouse, partition_key, config.symbol)
    kept = bool(previous and previous["order_status"] == PLACED)
    if kept:
        row = previous
        details = {"note": "order already placed for this partition; the executed plan is kept"}
    else:
        with ports.open_exchange(now) as exchange:
            row, details = plan_and_execute(
                exchange,
                config,
                warehouse,
                partition_key=partition_key,
                window_end=window_end,
                now=now,
                previous=previous,
            )
    # Stored before anything can fail on Redis or an unknown outcome: the retry starts from this row.
    rows = store_plan(warehouse, row)
    published = published_plan(row)
    redis = ports.publish(publish_plan, published)
    return RebalanceResult(
        row=row, published=published, details=details, rows_stored=rows, redis=redis, kept_executed_plan=kept
    )
