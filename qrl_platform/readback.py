"""Read back what materialisations stored, for notebooks and the CLI (`qrl_platform.load`).

Frames (raw market tables, indicators) come from the per-partition Parquet store; relational
assets (signals, executions, stats, plans) from the warehouse. One call shape for both. The caller
hands over the configuration (`qrl_platform.load` reads the settings once per call).

What counts as stored here is the frame files under QRL_HOME, not Dagster's event log (the answer every
other reader asks, `defs/stored.py`): a notebook loads without a Dagster instance and without importing
Dagster, and a file is exactly what it can read. A frame written by hand without a reported
materialisation therefore loads here while the platform's flow treats its day as missing.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import sqlalchemy as sa

from qrl_platform.calendar import parse_date, trading_days
from qrl_platform.settings import Settings
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
    as_of: str | dt.date | None = None,
    configuration: Settings,
) -> pl.DataFrame:
    """Return the stored rows of `asset_name` for one partition, a [start, end] range, or everything,
    from the frame root and warehouse of `configuration`.

    `adjusted_quotes` is daily_quotes with point-in-time backward-adjusted prices (see
    `load_adjusted_quotes`): `as_of` (default `end`) is the day whose knowledge of corporate actions applies.

    >>> quotes = qrl_platform.load("daily_quotes", "2024-03-05")
    >>> signals = qrl_platform.load("strategy_signals", start="2024-01-01", end="2024-03-31")
    >>> adjusted = qrl_platform.load("adjusted_quotes", start="2024-01-02", end="2024-06-28", as_of="2024-06-28")
    """
    if partition is not None and (start is not None or end is not None):
        raise ValueError("load: give either partition or start/end, not both")
    if asset_name == "adjusted_quotes":
        first, last = (start, end) if partition is None else (partition, partition)
        if first is None or last is None:
            raise ValueError("load: adjusted_quotes needs start and end (or a partition)")
        return load_adjusted_quotes(first, last, as_of=as_of, configuration=configuration)
    if as_of is not None:
        raise ValueError(f"load: as_of applies to adjusted_quotes only, not {asset_name!r}")
    if asset_name in WAREHOUSE_ASSETS:
        return _load_from_warehouse(configuration.warehouse_url, asset_name, partition, start, end)
    store = FrameStore(configuration.qrl_home)
    if not store.partitions(asset_name):
        raise KeyError(f"load: nothing stored for asset {asset_name!r} under {store.root}")
    if partition is not None:
        return store.read(asset_name, str(partition))
    return store.read_range(asset_name, start, end)


def load_adjusted_quotes(
    start: str | dt.date,
    end: str | dt.date,
    *,
    as_of: str | dt.date | None = None,
    configuration: Settings,
) -> pl.DataFrame:
    """daily_quotes of [start, end] plus adj_factor and adj_open/high/low/close, adjusted backward with the
    corporate actions known as of `as_of` (default `end`): exactly what a run on `as_of` saw.

    Every trading day's corporate_actions partition from `start` to `as_of` must be stored (an event after
    a quote scales it), otherwise this raises naming the missing days rather than adjusting silently wrong."""
    from qrl_platform.market.adjustment import adjust_prices

    first, last = parse_date(start, field="start"), parse_date(end, field="end")
    known = parse_date(as_of, field="as_of") if as_of is not None else last
    if known < last:
        raise ValueError(f"load: as_of {known} is before end {last}: quotes after as_of were not known then")
    store = FrameStore(configuration.qrl_home)
    stored = set(store.partitions("corporate_actions"))
    missing = [d for d in trading_days(first, known) if d.isoformat() not in stored]
    if missing:
        raise KeyError(
            f"load: corporate_actions not stored for {len(missing)} trading day(s) {missing[0]}..{missing[-1]}; "
            f"materialise corporate_actions for {first}..{known} first"
        )
    quotes = store.read_range("daily_quotes", first.isoformat(), last.isoformat())
    actions = store.read_range("corporate_actions", first.isoformat(), known.isoformat())
    return adjust_prices(quotes, actions, known)


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
