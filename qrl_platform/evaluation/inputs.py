"""Where the evaluation's inputs come from: the one place that reads stored frames and the warehouse.

The maths (`factor_ic`, `backtest`, `report`) takes prepared frames; this module prepares them. Prices
are adjusted and limits computed through the shared contracts (`market.adjustment.adjust_prices`,
`market.tradability.tradability`), with corporate actions read from the `corporate_actions` frames when
they are stored (none stored = no events).

Which partitions count as stored (the inputs `require` insists on, the days `stored_range` reads) is the
wiring's answer, Dagster's materialisations (`defs/stored.py`), handed in as a plain function
`stored_keys(table, keys)` of the same type the indicator computation takes; without one (a notebook, a
benchmark: no Dagster instance) the partitions the FrameStore holds count. The frames themselves are
always read from the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl
import sqlalchemy as sa

from qrl_platform.factors.compute_range import StoredKeys, stored_or_files
from qrl_platform.factors.registry import MODULE_ASSETS
from qrl_platform.market.schema import CORPORATE_ACTIONS
from qrl_platform.market.tradability import tradability
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.engine import SIGNALS_SCHEMA
from qrl_platform.warehouse import Warehouse

# The signal columns the backtest reads (the stored rows without their factor values).
SIGNAL_SCHEMA = {name: dtype for name, dtype in SIGNALS_SCHEMA.items() if name != "factor_values"}


class EvaluationInputsMissing(ValueError):
    """Stored inputs the evaluation needs are absent; the message names the asset and the days."""


def _keys(days: Sequence[dt.date]) -> list[str]:
    return [d.isoformat() for d in days]


def require(
    store: FrameStore, asset: str, days: Sequence[dt.date], why: str, stored_keys: StoredKeys | None = None
) -> None:
    """Raise `EvaluationInputsMissing` naming the days of `days` whose `asset` partition is not stored."""
    stored = stored_or_files(store, stored_keys)(asset, _keys(days))
    missing = [d for d in days if d.isoformat() not in stored]
    if missing:
        shown = ", ".join(str(d) for d in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise EvaluationInputsMissing(f"{asset} is not materialised for {shown} ({why}); materialise it first")


def quotes(store: FrameStore, days: Sequence[dt.date]) -> pl.DataFrame:
    columns = ["stock_id", "trade_date", "open", "close", "is_etf", "is_suspended"]
    frame = store.read_many("daily_quotes", _keys(days), columns=columns)
    if frame.is_empty():
        return pl.DataFrame(
            schema={
                "stock_id": pl.Utf8,
                "trade_date": pl.Date,
                "open": pl.Float64,
                "close": pl.Float64,
                "is_etf": pl.Boolean,
                "is_suspended": pl.Boolean,
            }
        )
    return frame


def corporate_actions(store: FrameStore, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Events with ex_date in [start, end] (the `corporate_actions` asset's partitions are ex-dates)."""
    frame = store.read_range("corporate_actions", start.isoformat(), end.isoformat())
    if frame.is_empty():
        return pl.DataFrame(schema=CORPORATE_ACTIONS)
    return frame.select([pl.col(c).cast(t) for c, t in CORPORATE_ACTIONS.items()])


def factors(store: FrameStore, days: Sequence[dt.date], factor_ids: Sequence[str]) -> pl.DataFrame:
    """One wide frame: stock_id, trade_date and every factor of `factor_ids` found in the indicator tables."""
    wide: pl.DataFrame | None = None
    for asset in MODULE_ASSETS.values():
        frame = store.read_many(asset, _keys(days))
        if frame.is_empty():
            continue
        frame = frame.select("stock_id", "trade_date", *[c for c in factor_ids if c in frame.columns])
        wide = frame if wide is None else wide.join(frame, on=["stock_id", "trade_date"], how="full", coalesce=True)
    if wide is None:
        return pl.DataFrame(schema={"stock_id": pl.Utf8, "trade_date": pl.Date})
    return wide


def market(quote_frame: pl.DataFrame, actions: pl.DataFrame, days: Sequence[dt.date]) -> pl.DataFrame:
    """Quotes of `days` with the day's limits and restrictions (`tradability`), as the backtest reads them.
    `quote_frame` must also hold the trading day before `days[0]`, whose close sets the first day's limits."""
    limits = tradability(quote_frame, actions)
    return (
        quote_frame.join(limits.drop("is_suspended"), on=["stock_id", "trade_date"], how="left")
        .filter(pl.col("trade_date").is_in(list(days)))
        .with_columns(pl.col("is_etf").fill_null(False), pl.col("is_suspended").fill_null(False))
    )


def signals(warehouse: Warehouse, start: dt.date, end: dt.date, strategy_ids: Sequence[str]) -> pl.DataFrame:
    """BUY/SELL rows of `strategy_signals` with trade_date in [start, end].

    A plain-text query read straight into polars: a year is ~0.8 M rows, and SQLAlchemy's per-row date
    conversion on SQLite took longer than the backtest itself. The rows come from the DB-API cursor as
    plain tuples: a text query has no result types to apply, and building a SQLAlchemy `Row` for each
    took longer than the query."""
    if not strategy_ids:
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    query = sa.text(
        f"SELECT {', '.join(SIGNAL_SCHEMA)} FROM strategy_signals "
        "WHERE trade_date BETWEEN :start AND :end AND signal IN ('BUY', 'SELL') AND strategy_id IN :ids"
    ).bindparams(sa.bindparam("ids", expanding=True))
    with warehouse.engine.connect() as connection:
        result = connection.execute(query, {"start": start, "end": end, "ids": list(strategy_ids)})
        frame = pl.DataFrame(result.cursor.fetchall(), schema=list(SIGNAL_SCHEMA), orient="row")
    if frame.is_empty():
        return pl.DataFrame(schema=SIGNAL_SCHEMA)
    if frame.schema["trade_date"] == pl.Utf8:  # SQLite stores dates as ISO text
        frame = frame.with_columns(pl.col("trade_date").str.to_date())
    return frame.cast(SIGNAL_SCHEMA)


def stored_range(
    store: FrameStore,
    name: str,
    start: dt.date | str | None,
    end: dt.date | str,
    stored_keys: StoredKeys | None = None,
) -> pl.DataFrame:
    """An evaluation frame's stored days in [start, end]. Every day of these frames has one schema, so a
    local store reads them in one parallel call (a 250-day report window is 750 small files). A stored
    day without a frame file is a closed day (materialised, nothing to write) and reads as no rows."""
    low, high = str(start) if start is not None else "", str(end)
    held = [key for key in store.partitions(name) if low <= key <= high]
    keys = sorted(held if stored_keys is None else stored_keys(name, held))
    if not keys:
        return pl.DataFrame()
    if not store.is_local:
        return store.read_many(name, keys)
    return pl.read_parquet([store.path(name, key) for key in keys])
