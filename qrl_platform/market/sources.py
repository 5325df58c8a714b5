"""What a market source must provide, whether the deterministic demo market or the live exchanges.

Daily tables are fetched one trading date at a time (that is how TWSE/TPEx publish them). A source
that has no data for a date answers `DayResult(closed=True, reason=…)` rather than raising: closed
days (typhoons the calendar missed) are not failures. Anything malformed raises
`BadMarketData` naming endpoint, date and field.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Protocol

import polars as pl

from qrl_platform.market import tables

# How each raw table is fetched (its declaration's `fetched`, qrl_platform/market/tables.py):
DAILY_TABLES = tables.names(fetched="per_day")  # `source.fetch_day(table, date)`
PERIODIC_TABLES = tables.names(fetched="per_period")  # `source.<table>(partition_date)`
# Tables of events fetched for a date range (`source.corporate_actions(start, end)`), stored per ex-date.
EVENT_TABLES = tables.names(fetched="per_range")


@dataclass
class DayResult:
    table: str
    date: dt.date
    frame: pl.DataFrame  # canonical schema (qrl_platform.market.schema); empty when closed
    closed: bool = False
    reason: str = ""
    # Where the rows came from, for materialisation metadata (endpoints, cache hits, demo seed).
    details: dict = field(default_factory=dict)


class MarketSource(Protocol):
    name: str  # "demo" | "live"
    # The raw tables this source can ingest: all DAILY_TABLES, plus each of PERIODIC_TABLES and
    # EVENT_TABLES it has a method of that name for. Factors built on a table the source cannot provide are not held
    # against the source by the quality checks, and the table's schedule skips.
    provides: frozenset[str]

    def fetch_day(self, table: str, date: dt.date) -> DayResult:
        """One daily table (one of DAILY_TABLES) for one date, both markets."""
        ...

    def has_data(self, date: dt.date) -> bool:
        """Cheap probe used by the availability sensor: has the day's closing data been published?"""
        ...
