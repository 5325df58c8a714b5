"""QRL on MEXC every 15 minutes (SPEC S8): thin Dagster wiring over cost / rebalance / execution.

Both assets write their own storage (warehouse rows keyed by partition, Redis when configured) and
return `MaterializeResult` metadata; re-materialising a partition replaces its rows.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import dagster as dg
import redis as redis_lib

from qrl_platform import dashboard
from qrl_platform.defs.outages import naming_outages
from qrl_platform.defs.partitions import quarter_hour
from qrl_platform.defs.resources import RedisResource, WarehouseResource
from qrl_platform.defs.treasury.resources import MexcResource, QrlSettings
from qrl_platform.treasury.cost import load_trades, position_at, publish_position, store_position, sync_trades
from qrl_platform.treasury.execution import (
    PLACED,
    REJECTED,
    UNKNOWN,
    execute_plan,
    guard_history,
    reconcile_unknown_orders,
)
from qrl_platform.treasury.mexc_client import (
    SpotExchange,
    parse_balances,
    parse_price,
    parse_symbol_rules,
    taker_fee_rate,
)
from qrl_platform.treasury.rebalance import (
    plan_rebalance,
    plan_row,
    publish_plan,
    published_plan,
    recent_plans,
    store_plan,
    stored_plan,
)
from qrl_platform.warehouse import Warehouse

GROUP = "qrl"
GROUP_DESCRIPTION = (
    "QRL/USDT treasury on MEXC (S8): cost basis and PnL from the account's own trades, and a symmetric "
    "rebalance plan kept in Redis and audited in the warehouse; execution is off unless enabled."
)
DEFAULT_FEE_RATE = Decimal("0.001")
GUARD_LOOKBACK = dt.timedelta(days=30)  # how far back the drawdown peak, daily cap and interval look
# What both quarter-hour assets share: one MEXC pool so they never hit the exchange concurrently.
QUARTER_HOUR_ASSET = dict(
    group_name=GROUP,
    partitions_def=quarter_hour,
    kinds={"python", "sql", "redis"},
    tags={"module": "qrl"},
    pool="qrl_mexc",
)


def _daily_charts(window: dg.TimeWindow, draw) -> dict[str, dg.MetadataValue]:
    """The charts `draw()` makes, on the one quarter hour a Taipei day that carries them
    (dashboard.treasury_charts_due); elsewhere only the key of the partition to open for them."""
    if not dashboard.treasury_charts_due(window.end):
        return {"charts_at_partition": dg.MetadataValue.text(dashboard.latest_charted_quarter_hour(window.end))}
    return {name: dg.MetadataValue.md(markdown) for name, markdown in draw().items()}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _publish(redis: RedisResource, publish, payload) -> str:
    """Write to Redis when configured; the warehouse row is already stored either way."""
    if not redis.configured:
        return "not configured"
    client = redis.client()
    try:
        # An outage raises ServerUnavailable (URL without password), which the job's retry policy
        # retries: the warehouse row is already stored and the re-run replaces, never duplicates.
        with naming_outages(f"{publish.__name__} (Redis write)", redis_url=redis.resolved_url()):
            return publish(client, payload)["redis"]
    except redis_lib.RedisError as exc:
        raise dg.Failure(description=f"Redis refused the write ({type(exc).__name__}: {exc})") from exc
    finally:
        client.close()


@dg.asset(
    description="QRL position at the end of each quarter hour: weighted-average cost from the account's own "
    "trades (synced incrementally, commissions included), invested USDT, realized and unrealized PnL, and "
    "the day's realized PnL. Warehouse `qrl_positions`; Redis hash `qrl:position`. " + GROUP_DESCRIPTION,
    **QUARTER_HOUR_ASSET,
)
def qrl_position(
    context: dg.AssetExecutionContext,
    mexc: MexcResource,
    warehouse: WarehouseResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    settings = mexc.settings()
    window = context.partition_time_window
    store = warehouse.get()
    with mexc.exchange(partition_end=window.end) as exchange:
        synced = sync_trades(
            exchange, store, account=settings.mode, symbol=settings.symbol, since_ms=settings.trades_since_ms
        )
        price = parse_price(exchange.ticker_price(settings.symbol), settings.symbol)
    trades = load_trades(store, account=settings.mode, symbol=settings.symbol)
    day_start = dt.datetime.combine(window.start.date(), dt.time(), tzinfo=dt.UTC)
    position = position_at(
        trades,
        partition_key=context.partition_key,
        symbol=settings.symbol,
        mode=settings.mode,
        as_of=window.end,
        day_start=day_start,
        price=price,
        base_asset=settings.base_asset,
        quote_asset=settings.quote_asset,
    )
    row = position.row()
    rows = store_position(store, row)
    redis_status = _publish(redis, publish_position, row)
    context.log.info(
        f"{settings.symbol} {settings.mode}: position {row['position_qty']} at avg cost {row['avg_cost']}, "
        f"realized {row['realized_pnl']:.4f}, unrealized {row['unrealized_pnl']}; {synced.inserted} new trade(s)"
    )
    return dg.MaterializeResult(
        metadata={
            **settings.metadata(),
            "price": row["price"],
            "position_qty": row["position_qty"],
            "avg_cost": row["avg_cost"],
            "invested": row["invested"],
            "realized_pnl": row["realized_pnl"],
            "unrealized_pnl": row["unrealized_pnl"],
            "fees_usdt": row["fees_usdt"],
            "trades_count": row["trades_count"],
            "realized_pnl_today": float(position.realized_pnl_today),
            "trades_today": position.trades_today,
            "untracked_sold_qty": float(position.state.untracked_sold_qty),
            "trades_synced": synced.inserted,
            "redis": redis_status,
            "dagster/row_count": rows,
            **_daily_charts(
                window,
                lambda: dashboard.position_chart(store, symbol=settings.symbol, mode=settings.mode, until=window.end),
            ),
        }
    )


def _plan_and_execute(
    exchange: SpotExchange,
    settings: QrlSettings,
    store: Warehouse,
    *,
    key: str,
    window: dg.TimeWindow,
    now: dt.datetime,
    previous: dict | None,
) -> tuple[dict, dict]:
    """Plan against the exchange's limits, balances and price, then execute if enabled and allowed."""
    since = now - GUARD_LOOKBACK
    # An earlier run's unknown order is looked up first, so this quarter hour sees it before planning.
    for found in reconcile_unknown_orders(
        exchange, recent_plans(store, symbol=settings.symbol, mode=settings.mode, since=since), now=now
    ):
        store_plan(store, found)
    rules = parse_symbol_rules(exchange.exchange_info(settings.symbol), settings.symbol)
    account = exchange.account()
    balances = parse_balances(account, rules.base_asset, rules.quote_asset)
    price = parse_price(exchange.ticker_price(settings.symbol), settings.symbol)
    fee_rate = settings.fee_rate_override or taker_fee_rate(account) or DEFAULT_FEE_RATE
    # Simulated prices belong to the partition's end; paper/live prices are observed now.
    observed_at = window.end if settings.mode == "simulated" else now
    plan = plan_rebalance(
        symbol=settings.symbol,
        price=price,
        balances=balances,
        rules=rules,
        params=replace(settings.params, fee_rate=fee_rate),
        timestamp=observed_at,
    )
    history = recent_plans(store, symbol=settings.symbol, mode=settings.mode, since=since)
    guards = guard_history(history, partition_key=key, kill_switch_reset_at=settings.limits.kill_switch_reset_at)
    outcome = execute_plan(
        exchange,
        plan,
        rules,
        settings.limits,
        account=settings.mode,
        partition_key=key,
        partition_end=window.end,
        now=now,
        past_orders=guards.past_orders,
        peak_total_value=guards.peak_total_value,
        previous=previous,
        kill_switch=guards.kill_switch,
    )
    row = plan_row(plan, partition_key=key, mode=settings.mode, execution=outcome.as_dict(), created_at=now)
    extra = {
        "qrl_locked": float(plan.qrl_locked),
        "usdt_locked": float(plan.usdt_locked),
        "fee_rate": float(fee_rate),
        "min_notional": float(rules.min_notional),
        "qty_step": float(rules.qty_step),
    }
    return row, extra


@dg.asset(
    deps=[qrl_position],
    description="Symmetric rebalance plan for each quarter hour: total = QRL·price + USDT (free balances), "
    "delta = QRL·price − total·target; HOLD within the exchange's min notional or the threshold, otherwise "
    "SELL (QRL above target) or BUY (QRL below target), rounded down to the exchange's precision and capped "
    "by balances, fees and the max order notional. Executed only when QRL_EXECUTE_ORDERS=true. Redis "
    "`qrl:rebalance:latest` + `qrl:rebalance:history` (50); warehouse `rebalance_plans`. " + GROUP_DESCRIPTION,
    **QUARTER_HOUR_ASSET,
)
def rebalance_plan(
    context: dg.AssetExecutionContext,
    mexc: MexcResource,
    warehouse: WarehouseResource,
    redis: RedisResource,
) -> dg.MaterializeResult:
    settings = mexc.settings()
    window = context.partition_time_window
    now = _now()
    store = warehouse.get()
    key = context.partition_key

    previous = stored_plan(store, key, settings.symbol)
    if previous and previous["order_status"] == PLACED:
        # This partition already traded: the executed plan is history. Re-running re-stores and
        # re-publishes it unchanged instead of planning again against the post-fill balances.
        row = previous
        extra = {"note": "order already placed for this partition; the executed plan is kept"}
        context.log.info(f"{key}: order {previous['order_id']} already placed; keeping the executed plan")
    else:
        with mexc.exchange(partition_end=window.end, now=now) as exchange:
            row, extra = _plan_and_execute(
                exchange, settings, store, key=key, window=window, now=now, previous=previous
            )
    rows = store_plan(store, row)
    published = published_plan(row)
    redis_status = _publish(redis, publish_plan, published)

    status = row["order_status"]
    log = context.log.warning if status in (REJECTED, UNKNOWN) else context.log.info
    log(
        f"{settings.symbol} {settings.mode}: {row['action']} {row['quantity']} ({row['reason']}); "
        f"execution {status}: {row['order_message']}"
    )
    metadata = {
        **settings.metadata(),
        **{name: value for name, value in published.items() if name not in ("partition_key", "mode", "symbol")},
        "order_message": row["order_message"],
        **extra,
        "redis": redis_status,
        "dagster/row_count": rows,
        **_daily_charts(
            window,
            lambda: dashboard.rebalance_chart(
                store, symbol=settings.symbol, mode=settings.mode, until=row["timestamp"]
            ),
        ),
    }
    if status == UNKNOWN:
        # Recorded first, then failed: the retry looks the client order id up before anything else.
        raise dg.Failure(description=f"order outcome unknown: {row['order_message']}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


QRL_ASSETS = [qrl_position, rebalance_plan]
