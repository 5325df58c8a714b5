"""QRL on MEXC every 15 minutes: thin Dagster wiring over the treasury's use cases
(`qrl_platform.treasury.cycle`).

Both assets write their own storage (warehouse rows keyed by partition, Redis when configured) and
return `MaterializeResult` metadata; re-materialising a partition replaces its rows.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg
import redis as redis_lib

from qrl_platform import dashboard
from qrl_platform.defs.outages import naming_outages
from qrl_platform.defs.partitions import quarter_hour
from qrl_platform.defs.resources import RedisResource, WarehouseResource
from qrl_platform.defs.treasury.resources import MexcResource
from qrl_platform.treasury import cycle
from qrl_platform.treasury.execution import REJECTED, UNKNOWN

GROUP = "treasury"
GROUP_DESCRIPTION = (
    "QRL/USDT treasury on MEXC: cost basis and PnL from the account's own trades, and a symmetric "
    "rebalance plan kept in Redis and audited in the warehouse; execution is off unless enabled."
)
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


def _publisher(redis: RedisResource) -> cycle.RedisPublisher:
    """Writes to Redis when configured; the warehouse row is already stored either way."""

    def publish(write, payload) -> str:
        if not redis.configured:
            return cycle.NOT_CONFIGURED
        client = redis.client()
        try:
            # An outage raises ServerUnavailable (URL without password), which the job's retry policy
            # retries: the warehouse row is already stored and the re-run replaces, never duplicates.
            with naming_outages(f"{write.__name__} (Redis write)", redis_url=redis.url):
                return cycle.publish_to(client)(write, payload)
        except redis_lib.RedisError as exc:
            raise dg.Failure(description=f"Redis refused the write ({type(exc).__name__}: {exc})") from exc
        finally:
            client.close()

    return publish


def _ports(
    mexc: MexcResource, warehouse: WarehouseResource, redis: RedisResource, window: dg.TimeWindow
) -> cycle.Ports:
    return cycle.Ports(
        open_exchange=lambda now: mexc.exchange(partition_end=window.end, now=now),
        warehouse=warehouse.get(),
        publish=_publisher(redis),
    )


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
    config = mexc.treasury_config()
    window = context.partition_time_window
    ports = _ports(mexc, warehouse, redis, window)
    result = cycle.update_position(
        config, ports, partition_key=context.partition_key, window_start=window.start, window_end=window.end
    )
    row = result.row
    context.log.info(
        f"{config.symbol} {config.mode}: position {row['position_qty']} at avg cost {row['avg_cost']}, "
        f"realized {row['realized_pnl']:.4f}, unrealized {row['unrealized_pnl']}; {result.trades_synced} new trade(s)"
    )
    return dg.MaterializeResult(
        metadata={
            **config.metadata(),
            "price": row["price"],
            "position_qty": row["position_qty"],
            "avg_cost": row["avg_cost"],
            "invested": row["invested"],
            "realized_pnl": row["realized_pnl"],
            "unrealized_pnl": row["unrealized_pnl"],
            "fees_usdt": row["fees_usdt"],
            "trades_count": row["trades_count"],
            "realized_pnl_today": float(result.position.realized_pnl_today),
            "trades_today": result.position.trades_today,
            "untracked_sold_qty": float(result.position.state.untracked_sold_qty),
            "trades_synced": result.trades_synced,
            "redis": result.redis,
            "dagster/row_count": result.rows_stored,
            **_daily_charts(
                window,
                lambda: dashboard.position_chart(
                    ports.warehouse, symbol=config.symbol, mode=config.mode, until=window.end
                ),
            ),
        }
    )


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
    config = mexc.treasury_config()
    window = context.partition_time_window
    key = context.partition_key
    ports = _ports(mexc, warehouse, redis, window)
    result = cycle.rebalance(config, ports, partition_key=key, window_end=window.end)
    row = result.row
    if result.kept_executed_plan:
        context.log.info(f"{key}: order {row['order_id']} already placed; keeping the executed plan")
    status = result.order_status
    log = context.log.warning if status in (REJECTED, UNKNOWN) else context.log.info
    log(
        f"{config.symbol} {config.mode}: {row['action']} {row['quantity']} ({row['reason']}); "
        f"execution {status}: {row['order_message']}"
    )
    metadata = {
        **config.metadata(),
        **{name: value for name, value in result.published.items() if name not in ("partition_key", "mode", "symbol")},
        "order_message": row["order_message"],
        **result.details,
        "redis": result.redis,
        "dagster/row_count": result.rows_stored,
        **_daily_charts(
            window,
            lambda: dashboard.rebalance_chart(
                ports.warehouse, symbol=config.symbol, mode=config.mode, until=row["timestamp"]
            ),
        ),
    }
    if result.outcome_unknown:
        # Recorded first, then failed: the retry looks the client order id up before anything else.
        raise dg.Failure(description=f"order outcome unknown: {row['order_message']}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


QRL_ASSETS = [qrl_position, rebalance_plan]
