"""Fetch raw tables for a set of partition dates and store them, one atomic file per partition.

Plain functions (no Dagster) so a notebook or the CLI can ingest exactly like the assets do.
A date fails fast with the source's error (naming endpoint, date and field) before its file is
touched, so partitions already stored keep their previous version.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.calendar import day_status
from qrl_platform.market import schema
from qrl_platform.market.sources import DayResult, MarketSource
from qrl_platform.storage.frames import FrameStore


@dataclass
class IngestSummary:
    table: str
    source: str
    rows: int = 0
    open_days: list[str] = field(default_factory=list)
    closed_days: dict[str, str] = field(default_factory=dict)  # date -> reason
    rows_per_market: Counter = field(default_factory=Counter)
    details: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        """What a person wants to see on the materialisation in the UI."""
        single_day = len(self.open_days) + len(self.closed_days) == 1
        meta: dict = {
            "dagster/row_count": self.rows,
            "source": self.source,
            "open_days": len(self.open_days),
            "closed_days": len(self.closed_days),
        }
        if single_day:
            meta["market_closed"] = bool(self.closed_days)
            if self.closed_days:
                meta["closed_reason"] = next(iter(self.closed_days.values()))
        elif self.closed_days:
            meta["closed_dates"] = "\n".join(f"{d}: {r}" for d, r in sorted(self.closed_days.items()))
        if self.rows_per_market:
            days = max(1, len(self.open_days))
            meta["stocks_per_market"] = {m: round(n / days) for m, n in sorted(self.rows_per_market.items())}
        if self.source == "demo":
            from qrl_platform.market.demo import DEMO_LABEL

            meta["data"] = DEMO_LABEL
        meta.update(self.details)
        return meta


def fetch_day(source: MarketSource, table: str, date: dt.date) -> DayResult:
    """The calendar decides first (no request on a known holiday); the source may still say closed."""
    status = day_status(date)
    if not status.is_open:
        return DayResult(table, date, schema.empty(table), closed=True, reason=status.reason)
    return source.fetch_day(table, date)


def ingest_days(
    source: MarketSource,
    store: FrameStore,
    table: str,
    dates: list[dt.date],
    *,
    log=None,
    on_day: Callable[[], None] | None = None,
) -> IngestSummary:
    """Fetch and store each of `dates`; `on_day` is called after each one (progress)."""
    summary = IngestSummary(table=table, source=source.name)
    for date in dates:
        result = fetch_day(source, table, date)
        frame = result.frame if not result.closed else schema.empty(table)
        store.write(table, date.isoformat(), frame)
        summary.rows += frame.height
        if result.closed:
            summary.closed_days[date.isoformat()] = result.reason
            if log:
                log.info(f"{table} {date}: market closed ({result.reason})")
        else:
            summary.open_days.append(date.isoformat())
            if "market" in frame.columns:
                summary.rows_per_market.update(dict(frame.group_by("market").len().iter_rows()))
        for key, value in (result.details or {}).items():
            if isinstance(value, (int, float)) and key in ("requests", "cache_hits"):
                summary.details[key] = summary.details.get(key, 0) + value
        if on_day:
            on_day()
    return summary


def store_frame(store: FrameStore, table: str, partition: str, frame: pl.DataFrame) -> dict:
    """Store a slower-cadence table's partition (monthly revenue, financials, shareholding)."""
    store.write(table, partition, frame)
    meta: dict = {"dagster/row_count": frame.height, "stocks": frame["stock_id"].n_unique() if frame.height else 0}
    if frame.height and "published_on" in frame.columns:
        meta["published_from"] = str(frame["published_on"].min())
        meta["published_to"] = str(frame["published_on"].max())
    return meta
