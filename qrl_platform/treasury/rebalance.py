"""The symmetric QRL/USDT rebalance plan, and where plans are kept.

The maths works in `Decimal` and rounds quantities DOWN to the exchange's step, so an order built
from a plan can never ask for more than the free balance (or, for a BUY, more USDT than the free
balance after fees). Locked funds (open orders) are excluded: they cannot be traded now.

The lower half stores plans: one warehouse row per partition (the audit trail) and the Redis layout
`qrl:rebalance:latest` / `qrl:rebalance:history` (newest first, at most 50, one entry per partition).
No Dagster imports here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

import redis
import sqlalchemy as sa

from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import rebalance_plans

BUY, SELL, HOLD = "BUY", "SELL", "HOLD"
REASON_SELL = "QRL above target"
REASON_BUY = "QRL below target"

REDIS_LATEST_KEY = "qrl:rebalance:latest"
REDIS_HISTORY_KEY = "qrl:rebalance:history"
REDIS_HISTORY_LENGTH = 50


@dataclass(frozen=True)
class SymbolRules:
    """What the exchange allows for one symbol, read from exchangeInfo (see mexc_client.parse_symbol_rules)."""

    symbol: str
    base_asset: str
    quote_asset: str
    status: str  # MEXC: "1" = trading
    spot_trading_allowed: bool
    order_types: tuple[str, ...]
    base_precision: int  # decimals allowed in a quantity
    quote_precision: int  # decimals of prices and order values
    min_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal | None

    @property
    def qty_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.base_precision)

    @property
    def trading(self) -> bool:
        return self.status == "1" and self.spot_trading_allowed

    @property
    def market_orders_allowed(self) -> bool:
        return "MARKET" in self.order_types

    def round_qty_down(self, qty: Decimal) -> Decimal:
        if qty <= 0:
            return Decimal(0)
        return qty.quantize(self.qty_step, rounding=ROUND_DOWN)

    def format_qty(self, qty: Decimal) -> str:
        return f"{self.round_qty_down(qty):f}"


@dataclass(frozen=True)
class Balances:
    base_free: Decimal
    base_locked: Decimal
    quote_free: Decimal
    quote_locked: Decimal

    def validate(self) -> None:
        for name in ("base_free", "base_locked", "quote_free", "quote_locked"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"balances: {name} is negative ({value})")


@dataclass(frozen=True)
class RebalanceParams:
    target_ratio: Decimal = Decimal("0.5")  # share of total value held in QRL
    threshold: Decimal = Decimal("0.01")  # HOLD while |delta| / total is below this
    max_order_notional: Decimal | None = Decimal("100")  # USDT; None = only the exchange's maximum
    fee_rate: Decimal = Decimal("0.001")  # taker fee reserved out of USDT on a BUY

    def __post_init__(self) -> None:
        if not Decimal(0) <= self.target_ratio <= Decimal(1):
            raise ValueError(f"target_ratio must be within [0, 1], got {self.target_ratio}")
        if self.threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {self.threshold}")
        if self.max_order_notional is not None and self.max_order_notional <= 0:
            raise ValueError(f"max_order_notional must be > 0, got {self.max_order_notional}")
        if not Decimal(0) <= self.fee_rate < Decimal("0.1"):
            raise ValueError(f"fee_rate must be within [0, 0.1), got {self.fee_rate}")


@dataclass(frozen=True)
class RebalancePlan:
    timestamp: dt.datetime
    symbol: str
    price: Decimal | None
    qrl_balance: Decimal  # free QRL
    usdt_balance: Decimal  # free USDT
    qrl_value: Decimal | None
    total_value: Decimal | None
    target_ratio: Decimal
    current_ratio: Decimal | None
    action: str  # BUY | SELL | HOLD
    quantity: Decimal
    notional_usdt: Decimal
    reason: str
    details: str = ""  # caps, rounding and excluded locked funds, for the audit trail
    qrl_locked: Decimal = Decimal(0)
    usdt_locked: Decimal = Decimal(0)
    capped_by: tuple[str, ...] = field(default=())

    def to_json_dict(self) -> dict[str, Any]:
        """The plan as published (Redis, metadata): floats and an ISO-8601 UTC timestamp."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, Decimal):
                out[key] = float(value)
            elif isinstance(value, dt.datetime):
                out[key] = value.astimezone(dt.UTC).isoformat()
            elif isinstance(value, tuple):
                out[key] = list(value)
            else:
                out[key] = value
        return out


def plan_rebalance(
    *,
    symbol: str,
    price: Decimal | None,
    balances: Balances,
    rules: SymbolRules,
    params: RebalanceParams,
    timestamp: dt.datetime,
) -> RebalancePlan:
    """total = QRL·price + USDT (free); delta = QRL·price − total·target; HOLD / SELL / BUY."""
    balances.validate()
    notes: list[str] = []
    if balances.base_locked or balances.quote_locked:
        notes.append(
            f"locked funds excluded: {balances.base_locked:f} {rules.base_asset}, "
            f"{balances.quote_locked:f} {rules.quote_asset}"
        )

    def plan(
        action: str, reason: str, *, qty: Decimal = Decimal(0), values=(None, None, None), caps=()
    ) -> RebalancePlan:
        qrl_value, total, ratio = values
        return RebalancePlan(
            timestamp=timestamp,
            symbol=symbol,
            price=price,
            qrl_balance=balances.base_free,
            usdt_balance=balances.quote_free,
            qrl_value=qrl_value,
            total_value=total,
            target_ratio=params.target_ratio,
            current_ratio=ratio,
            action=action,
            quantity=qty,
            notional_usdt=qty * price if (qty and price) else Decimal(0),
            reason=reason,
            details="; ".join(notes),
            qrl_locked=balances.base_locked,
            usdt_locked=balances.quote_locked,
            capped_by=tuple(caps),
        )

    if price is None or price <= 0:
        got = "missing" if price is None else f"got {price}"
        return plan(HOLD, f"no valid price for {symbol} ({got}); nothing can be valued")

    qrl_value = balances.base_free * price
    total = qrl_value + balances.quote_free
    if total <= 0:
        return plan(HOLD, "no free balances to rebalance", values=(qrl_value, total, None))
    current_ratio = qrl_value / total
    values = (qrl_value, total, current_ratio)
    delta = qrl_value - total * params.target_ratio

    if abs(delta) < rules.min_notional:
        return plan(
            HOLD,
            f"within min notional (|delta| {abs(delta):.4f} < {rules.min_notional:f} {rules.quote_asset})",
            values=values,
        )
    if abs(delta) / total < params.threshold:
        return plan(
            HOLD, f"within threshold (|delta|/total {abs(delta) / total:.4%} < {params.threshold:.2%})", values=values
        )

    action, reason = (SELL, REASON_SELL) if delta > 0 else (BUY, REASON_BUY)
    wanted = abs(delta) / price
    limits: list[tuple[str, Decimal]] = []
    if action == SELL:
        limits.append(("free QRL balance", balances.base_free))
    else:
        limits.append(("free USDT balance after fees", balances.quote_free / (price * (1 + params.fee_rate))))
    if params.max_order_notional is not None:
        limits.append(("max order notional", params.max_order_notional / price))
    if rules.max_notional is not None:
        limits.append(("exchange max order value", rules.max_notional / price))
    quantity = wanted
    caps = []
    for name, limit in limits:
        if limit < wanted:
            caps.append(name)
        quantity = min(quantity, limit)
    quantity = rules.round_qty_down(quantity)
    if caps:
        notes.append("capped by " + ", ".join(caps))

    notional = quantity * price
    if quantity <= 0 or quantity < rules.min_qty or notional < rules.min_notional:
        return plan(
            HOLD,
            f"{reason}, but the order after caps and rounding ({quantity:f} {rules.base_asset} ≈ {notional:.4f} "
            f"{rules.quote_asset}) is below the exchange minimum (qty {rules.min_qty:f}, value "
            f"{rules.min_notional:f}) — insufficient free balance",
            values=values,
            caps=caps,
        )
    return plan(action, reason, qty=quantity, values=values, caps=caps)


# ---- storage: the warehouse audit row and the Redis layout -------------------------------------------


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def plan_row(
    plan: RebalancePlan,
    *,
    partition_key: str,
    mode: str,
    execution: Mapping[str, Any],
    created_at: dt.datetime,
) -> dict[str, Any]:
    """One `rebalance_plans` row; `execution` carries client_order_id/order_status/order_id/… ."""
    return {
        "partition_key": partition_key,
        "symbol": plan.symbol,
        "mode": mode,
        "timestamp": plan.timestamp,
        "price": _float(plan.price),
        "qrl_balance": float(plan.qrl_balance),
        "usdt_balance": float(plan.usdt_balance),
        "qrl_value": _float(plan.qrl_value),
        "total_value": _float(plan.total_value),
        "target_ratio": float(plan.target_ratio),
        "current_ratio": _float(plan.current_ratio),
        "action": plan.action,
        "quantity": float(plan.quantity),
        "notional_usdt": float(plan.notional_usdt),
        "reason": plan.reason,
        "details": plan.details or None,
        "client_order_id": execution.get("client_order_id"),
        "order_status": execution.get("order_status"),
        "order_id": execution.get("order_id"),
        "order_message": execution.get("order_message"),
        "executed_at": execution.get("executed_at"),
        "created_at": created_at,
    }


PUBLISHED_FIELDS = (
    "partition_key",
    "mode",
    "timestamp",
    "symbol",
    "price",
    "qrl_balance",
    "usdt_balance",
    "qrl_value",
    "total_value",
    "target_ratio",
    "current_ratio",
    "action",
    "quantity",
    "notional_usdt",
    "reason",
    "details",
    "order_status",
    "client_order_id",
    "order_id",
)


def published_plan(row: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON published to Redis and shown as metadata, from a `rebalance_plans` row."""
    out = {}
    for name in PUBLISHED_FIELDS:
        value = row.get(name)
        if isinstance(value, dt.datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).isoformat()
        out[name] = value
    return out


def store_plan(warehouse: Warehouse, row: Mapping[str, Any]) -> int:
    """Replace the partition's plan row in one transaction (re-materialising never duplicates)."""
    where = sa.and_(rebalance_plans.c.partition_key == row["partition_key"], rebalance_plans.c.symbol == row["symbol"])
    with warehouse.begin() as connection:
        return warehouse.replace_rows(connection, rebalance_plans, where, [row])


def stored_plan(warehouse: Warehouse, partition_key: str, symbol: str) -> dict[str, Any] | None:
    query = sa.select(rebalance_plans).where(
        rebalance_plans.c.partition_key == partition_key, rebalance_plans.c.symbol == symbol
    )
    with warehouse.engine.connect() as connection:
        row = connection.execute(query).mappings().first()
    return dict(row) if row else None


def recent_plans(warehouse: Warehouse, *, symbol: str, mode: str, since: dt.datetime) -> list[dict[str, Any]]:
    """Plans of this account since `since` — what the execution guards (cap, interval, drawdown) look at."""
    query = (
        sa.select(rebalance_plans)
        .where(rebalance_plans.c.symbol == symbol, rebalance_plans.c.mode == mode, rebalance_plans.c.timestamp >= since)
        .order_by(rebalance_plans.c.partition_key)
    )
    with warehouse.engine.connect() as connection:
        return [dict(row) for row in connection.execute(query).mappings()]


def publish_plan(client, plan_json: Mapping[str, Any]) -> dict[str, Any]:
    """Write the plan to Redis: latest JSON, and the bounded history with one entry per partition.

    The history is kept newest-first by partition key. A new partition (the usual 15-minute case) is
    LPUSHed and the list LTRIMmed to 50 in the same MULTI as the SET of latest. Re-materialising a
    partition already in the history replaces its entry in place (LSET) instead of pushing a
    duplicate; a backfilled older partition is inserted at its place (LINSERT) or skipped if older
    than the whole window. `latest` only moves forward, so a backfill never hides the newest plan.
    WATCH makes the read-decide-write atomic against a concurrent run.
    """
    partition_key = plan_json["partition_key"]
    payload = json.dumps(plan_json, sort_keys=True)
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(REDIS_HISTORY_KEY, REDIS_LATEST_KEY)
                history = pipe.lrange(REDIS_HISTORY_KEY, 0, -1)
                latest = pipe.get(REDIS_LATEST_KEY)
                keys = [_partition_of(entry) for entry in history]
                latest_key = _partition_of(latest) if latest else None
                pipe.multi()
                outcome = "history: "
                if partition_key in keys:
                    pipe.lset(REDIS_HISTORY_KEY, keys.index(partition_key), payload)
                    outcome += "replaced existing entry"
                elif not keys or partition_key > keys[0]:
                    pipe.lpush(REDIS_HISTORY_KEY, payload)
                    outcome += "pushed"
                else:
                    newer = [index for index, key in enumerate(keys) if key > partition_key]
                    pivot = history[newer[-1]]
                    if len(keys) >= REDIS_HISTORY_LENGTH and newer[-1] == len(keys) - 1:
                        outcome += "older than the retained window, not added"
                    else:
                        pipe.linsert(REDIS_HISTORY_KEY, "AFTER", pivot, payload)
                        outcome += "inserted in order"
                pipe.ltrim(REDIS_HISTORY_KEY, 0, REDIS_HISTORY_LENGTH - 1)
                if latest_key is None or partition_key >= latest_key:
                    pipe.set(REDIS_LATEST_KEY, payload)
                    outcome += "; latest updated"
                else:
                    outcome += f"; latest kept at newer partition {latest_key}"
                pipe.execute()
                return {"redis": outcome}
            except redis.WatchError:
                continue  # another run wrote in between: read again and redo


def _partition_of(entry: str | bytes) -> str:
    try:
        return str(json.loads(entry).get("partition_key", ""))
    except (ValueError, AttributeError):
        return ""
