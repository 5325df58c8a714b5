"""`qrl_platform.load`: read back what materialisations stored, for notebooks and the CLI.

Frames (raw market tables, indicators) come from the per-partition Parquet store; relational
assets (signals, executions, stats, plans) from the warehouse. One call shape for both.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from qrl_platform.calendar import parse_date
from qrl_platform.settings import Settings, settings
from qrl_platform.storage.frames import FrameStore
from qrl_platform.warehouse import Warehouse, schema

# Warehouse-backed assets: asset name -> (table, column that holds the partition, its kind).
WAREHOUSE_ASSETS: dict[str, tuple[str, str | None, str]] = {
    "strategy_signals": ("strategy_signals", "trade_date", "date"),
    "strategy_executions": ("strategy_executions", "execution_date", "date"),
    "job_execution_details": ("job_execution_details", "trade_date", "date"),
    "strategy_stats": ("strategy_stats", "as_of_date", "date"),
    "strategies": ("strategies", None, ""),
    "factor_metadata": ("factor_metadata", None, ""),
    "event_outbox": ("event_outbox", "trade_date", "date"),
    "m13_notification": ("event_outbox", "trade_date", "date"),
    "qrl_position": ("qrl_positions", "partition_key", "key"),
    "rebalance_plan": ("rebalance_plans", "partition_key", "key"),
    "qrl_trades": ("qrl_trades", None, ""),
}


def load(
    asset_name: str,
    partition: str | dt.date | None = None,
    *,
    start: str | dt.date | None = None,
    end: str | dt.date | None = None,
    configuration: Settings | None = None,
) -> pl.DataFrame:
    """Return the stored rows of `asset_name` for one partition, a [start, end] range, or everything.

    The notebook's entry point, like the CLI: it reads the settings once (or takes `configuration`)
    and hands the frame root and warehouse URL on.

    >>> quotes = load("daily_quotes", "2024-03-05")
    >>> signals = load("strategy_signals", start="2024-01-01", end="2024-03-31")
    """
    if partition is not None and (start is not None or end is not None):
        raise ValueError("load: give either partition or start/end, not both")
    current = configuration or settings()
    if asset_name in WAREHOUSE_ASSETS:
        return _load_from_warehouse(current.warehouse_url, asset_name, partition, start, end)
    store = FrameStore(current.qrl_home)
    if not store.partitions(asset_name):
        raise KeyError(f"load: nothing stored for asset {asset_name!r} under {store.root}")
    if partition is not None:
        return store.read(asset_name, str(partition))
    return store.read_range(asset_name, start, end)


def _load_from_warehouse(warehouse_url: str, asset_name: str, partition, start, end) -> pl.DataFrame:
    table_name, column, kind = WAREHOUSE_ASSETS[asset_name]
    table = schema.TABLES[table_name]
    query = sa.select(table)
    if column is not None:
        col = table.c[column]

        def value(v):
            return parse_date(v, field=column) if kind == "date" else str(v)

        if partition is not None:
            query = query.where(col == value(partition))
        if start is not None:
            query = query.where(col >= value(start))
        if end is not None:
            query = query.where(col <= value(end)) if kind == "date" else query.where(col <= str(end) + "\uffff")
        query = query.order_by(col)
    elif partition is not None or start is not None or end is not None:
        raise ValueError(f"load: {asset_name} is not partitioned; call load({asset_name!r}) without a partition")
    return Warehouse(warehouse_url).read(query)
