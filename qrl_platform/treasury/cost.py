"""Weighted-average cost basis and PnL of the QRL position from the account's own trades.

`apply_trades(state, new_trades)` is incremental: the state is a cursor over the trade ledger, and
feeding trades in (time, id) order in any number of batches gives the same state as one batch.
Commissions are part of the cost: a fee paid in USDT on a buy raises the cost, a fee paid in QRL on a
buy lowers the quantity received; on a sell the fee lowers the proceeds. Fees in a third asset (e.g.
MX) cannot be valued without its price and are left out of the cost (counted in `unvalued_fee_trades`).

Definitions used everywhere (metadata, warehouse, Redis):
* position_qty — QRL held according to the trades;
* invested — USDT still tied up in that position (position × average cost, fees included);
* realized_pnl — proceeds of sells minus the average cost of what was sold;
* unrealized_pnl — position × price − invested.

The lower half keeps the ledger: `sync_trades` pulls myTrades incrementally (from the newest trade
already stored) into `qrl_trades`, inserting only ids not yet there. No Dagster imports here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import redis
import sqlalchemy as sa

from qrl_platform.treasury.mexc_client import SpotExchange, parse_trades
from qrl_platform.treasury.trades import Trade
from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import qrl_positions, qrl_trades

ZERO = Decimal(0)
REDIS_POSITION_KEY = "qrl:position"


@dataclass(frozen=True)
class CostState:
    position_qty: Decimal = ZERO
    invested: Decimal = ZERO  # cost basis of the position still held, fees included
    realized_pnl: Decimal = ZERO
    fees_usdt: Decimal = ZERO
    trades_count: int = 0
    untracked_sold_qty: Decimal = ZERO  # sold beyond what the trades bought (deposits, older history)
    unvalued_fee_trades: int = 0
    last_trade_key: tuple[int, int, str] | None = None

    @property
    def avg_cost(self) -> Decimal | None:
        return self.invested / self.position_qty if self.position_qty > 0 else None

    def unrealized_pnl(self, price: Decimal | None) -> Decimal | None:
        if price is None or price <= 0:
            return None
        return self.position_qty * price - self.invested


def apply_trade(state: CostState, trade: Trade, *, base_asset: str = "QRL", quote_asset: str = "USDT") -> CostState:
    """One trade on top of a state (weighted-average cost, commissions included)."""
    fee_in_quote = trade.commission if trade.commission_asset == quote_asset else ZERO
    fee_in_base = trade.commission if trade.commission_asset == base_asset else ZERO
    unvalued = int(trade.commission > 0 and trade.commission_asset not in (base_asset, quote_asset))
    fees_usdt = state.fees_usdt + fee_in_quote + fee_in_base * trade.price

    if trade.is_buyer:
        received = trade.qty - fee_in_base
        position = state.position_qty + received
        invested = state.invested + trade.quote_qty + fee_in_quote
        realized = state.realized_pnl
        untracked = state.untracked_sold_qty
    else:
        delivered = trade.qty + fee_in_base
        proceeds = trade.quote_qty - fee_in_quote
        tracked = min(delivered, state.position_qty)
        cost_out = state.invested * tracked / state.position_qty if state.position_qty > 0 else ZERO
        # Only the part we know the cost of realises PnL; the rest was never bought in these trades.
        realized = state.realized_pnl + proceeds * tracked / delivered - cost_out
        position = state.position_qty - tracked
        invested = state.invested - cost_out
        untracked = state.untracked_sold_qty + (delivered - tracked)
    if position <= 0:
        position, invested = ZERO, ZERO  # flat: no dust cost left behind
    return replace(
        state,
        position_qty=position,
        invested=invested,
        realized_pnl=realized,
        fees_usdt=fees_usdt,
        trades_count=state.trades_count + 1,
        untracked_sold_qty=untracked,
        unvalued_fee_trades=state.unvalued_fee_trades + unvalued,
        last_trade_key=trade.sort_key,
    )


def apply_trades(
    state: CostState, trades: Iterable[Trade], *, base_asset: str = "QRL", quote_asset: str = "USDT"
) -> CostState:
    """State + new trades → new state. Trades at or before the state's cursor were already counted."""
    for trade in sorted(trades, key=lambda trade: trade.sort_key):
        if state.last_trade_key is not None and trade.sort_key <= state.last_trade_key:
            continue
        state = apply_trade(state, trade, base_asset=base_asset, quote_asset=quote_asset)
    return state


@dataclass(frozen=True)
class Position:
    """A position snapshot at the end of a partition, ready to store."""

    partition_key: str
    symbol: str
    mode: str
    as_of: dt.datetime
    price: Decimal | None
    state: CostState
    realized_pnl_today: Decimal  # daily roll-up: realized since 00:00 UTC of the partition's day
    trades_today: int

    def row(self) -> dict[str, Any]:
        state = self.state
        unrealized = state.unrealized_pnl(self.price)
        return {
            "partition_key": self.partition_key,
            "symbol": self.symbol,
            "mode": self.mode,
            "as_of": self.as_of,
            "price": None if self.price is None else float(self.price),
            "position_qty": float(state.position_qty),
            "avg_cost": None if state.avg_cost is None else float(state.avg_cost),
            "invested": float(state.invested),
            "realized_pnl": float(state.realized_pnl),
            "unrealized_pnl": None if unrealized is None else float(unrealized),
            "fees_usdt": float(state.fees_usdt),
            "trades_count": state.trades_count,
        }


def position_at(
    trades: Iterable[Trade],
    *,
    partition_key: str,
    symbol: str,
    mode: str,
    as_of: dt.datetime,
    day_start: dt.datetime,
    price: Decimal | None,
    base_asset: str = "QRL",
    quote_asset: str = "USDT",
) -> Position:
    """The position after every trade before `as_of`, plus the day's realized PnL and trade count."""
    end_ms = _ms(as_of)
    day_ms = _ms(day_start)
    ordered = sorted((trade for trade in trades if trade.time_ms < end_ms), key=lambda trade: trade.sort_key)
    before_day = [trade for trade in ordered if trade.time_ms < day_ms]
    state_at_day_start = apply_trades(CostState(), before_day, base_asset=base_asset, quote_asset=quote_asset)
    state = apply_trades(state_at_day_start, ordered, base_asset=base_asset, quote_asset=quote_asset)
    return Position(
        partition_key=partition_key,
        symbol=symbol,
        mode=mode,
        as_of=as_of,
        price=price,
        state=state,
        realized_pnl_today=state.realized_pnl - state_at_day_start.realized_pnl,
        trades_today=state.trades_count - state_at_day_start.trades_count,
    )


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


# ---- the trade ledger in the warehouse ----------------------------------------------------------


@dataclass(frozen=True)
class SyncResult:
    fetched: int
    inserted: int
    requests: int
    start_time_ms: int | None


def trade_row(trade: Trade, account: str) -> dict[str, Any]:
    return {
        "account": account,
        "trade_id": trade.trade_id,
        "symbol": trade.symbol,
        "order_id": trade.order_id,
        "price": float(trade.price),
        "qty": float(trade.qty),
        "quote_qty": float(trade.quote_qty),
        "commission": float(trade.commission),
        "commission_asset": trade.commission_asset,
        "time_ms": trade.time_ms,
        "is_buyer": trade.is_buyer,
        "is_maker": trade.is_maker,
    }


def _trade_from_row(row: Mapping[str, Any]) -> Trade:
    # Floats came from exact decimal strings; str() round-trips them to the same short decimal.
    return Trade(
        trade_id=row["trade_id"],
        symbol=row["symbol"],
        order_id=row["order_id"],
        price=Decimal(str(row["price"])),
        qty=Decimal(str(row["qty"])),
        quote_qty=Decimal(str(row["quote_qty"])),
        commission=Decimal(str(row["commission"])),
        commission_asset=row["commission_asset"],
        time_ms=int(row["time_ms"]),
        is_buyer=bool(row["is_buyer"]),
        is_maker=None if row["is_maker"] is None else bool(row["is_maker"]),
    )


def load_trades(warehouse: Warehouse, *, account: str, symbol: str, until_ms: int | None = None) -> list[Trade]:
    query = sa.select(qrl_trades).where(qrl_trades.c.account == account, qrl_trades.c.symbol == symbol)
    if until_ms is not None:
        query = query.where(qrl_trades.c.time_ms < until_ms)
    with warehouse.engine.connect() as connection:
        rows = connection.execute(query.order_by(qrl_trades.c.time_ms)).mappings().all()
    return sorted((_trade_from_row(row) for row in rows), key=lambda trade: trade.sort_key)


def sync_trades(
    exchange: SpotExchange,
    warehouse: Warehouse,
    *,
    account: str,
    symbol: str,
    since_ms: int | None = None,
    page_limit: int = 100,
    max_pages: int = 1000,
) -> SyncResult:
    """Fetch the account's trades newer than the ledger's newest one and insert the new ids only.

    The cursor is the newest stored `time_ms` (inclusive, so trades sharing that millisecond are not
    missed); ids already stored are skipped, so overlapping pages and repeated runs never duplicate.
    A full page means there may be more: move the cursor to the newest time seen and ask again.
    """
    with warehouse.engine.connect() as connection:
        newest = connection.execute(
            sa.select(sa.func.max(qrl_trades.c.time_ms)).where(
                qrl_trades.c.account == account, qrl_trades.c.symbol == symbol
            )
        ).scalar()
    start = int(newest) if newest is not None else since_ms
    first_start = start
    fetched = inserted = requests = 0
    while requests < max_pages:
        page = parse_trades(exchange.my_trades(symbol, start_time=start, limit=page_limit), symbol)
        requests += 1
        fetched += len(page)
        inserted += _insert_new_trades(warehouse, page, account=account, symbol=symbol)
        if len(page) < page_limit:
            break
        newest_seen = max(trade.time_ms for trade in page)
        # A full page inside one millisecond cannot advance the cursor; step past it rather than loop.
        start = newest_seen if start is None or newest_seen > start else start + 1
    return SyncResult(fetched=fetched, inserted=inserted, requests=requests, start_time_ms=first_start)


def _insert_new_trades(warehouse: Warehouse, trades: list[Trade], *, account: str, symbol: str) -> int:
    if not trades:
        return 0
    ids = {trade.trade_id for trade in trades}
    with warehouse.begin() as connection:
        existing = set(
            connection.execute(
                sa.select(qrl_trades.c.trade_id).where(
                    qrl_trades.c.account == account, qrl_trades.c.symbol == symbol, qrl_trades.c.trade_id.in_(ids)
                )
            ).scalars()
        )
        new_rows = {trade.trade_id: trade_row(trade, account) for trade in trades if trade.trade_id not in existing}
        if new_rows:
            connection.execute(_insert_ignoring_duplicates(warehouse), list(new_rows.values()))
    return len(new_rows)


def _insert_ignoring_duplicates(warehouse: Warehouse):
    # Two runs syncing at once may race to insert the same trade; the loser's insert is a no-op.
    if warehouse.dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif warehouse.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return qrl_trades.insert()
    return insert(qrl_trades).on_conflict_do_nothing()


def store_position(warehouse: Warehouse, row: Mapping[str, Any]) -> int:
    """Replace the partition's position row in one transaction."""
    where = sa.and_(qrl_positions.c.partition_key == row["partition_key"], qrl_positions.c.symbol == row["symbol"])
    with warehouse.begin() as connection:
        return warehouse.replace_rows(connection, qrl_positions, where, [row])


def publish_position(client, row: Mapping[str, Any]) -> dict[str, Any]:
    """The position as the Redis hash `qrl:position`; it only moves forward in partition order.

    The hash is rewritten whole (DEL + HSET in one MULTI) so no field from an older snapshot lingers;
    None becomes "" because Redis hashes hold strings.
    """
    fields = {
        key: "" if value is None else (value.isoformat() if isinstance(value, dt.datetime) else str(value))
        for key, value in row.items()
    }
    with client.pipeline() as pipe:
        while True:
            try:
                pipe.watch(REDIS_POSITION_KEY)
                current = pipe.hget(REDIS_POSITION_KEY, "partition_key")
                if current and current > row["partition_key"]:
                    pipe.unwatch()
                    return {"redis": f"position kept at newer partition {current}"}
                pipe.multi()
                pipe.delete(REDIS_POSITION_KEY)
                pipe.hset(REDIS_POSITION_KEY, mapping=fields)
                pipe.execute()
                return {"redis": "position hash written"}
            except redis.WatchError:
                continue
