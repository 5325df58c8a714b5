"""Disposition (處置股) and full-cash-delivery (全額交割) notices: which stocks trade under restrictions.

Both exchanges announce them (a stock under disposition trades by call auction at intervals, with
pre-paid buys; a full-cash-delivery stock must be paid in full before the order). The shape is the
one `market.tradability.tradability` reads: stock_id, kind, start_date, end_date (inclusive).

* Demo market: a few deterministic notices drawn from the demo seed (non-ETF stocks; disposition
  windows of 10 trading days, full-cash delivery of about three months), so universes and stats can
  be exercised on them.
* Live market: the exchanges' announcement pages are not ingested yet — `notices_for` answers None
  with the note `LIVE_NOT_PUBLISHED`, and every flag is False.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from qrl_platform.market.demo import DemoMarket
from qrl_platform.market.tradability import NOTICES_SCHEMA

LIVE_NOT_PUBLISHED = "not published by our live source yet (disposition / full-cash delivery flags are all False)"
DEMO_NOTE = "demo market: deterministic synthetic notices"

DISPOSITION_PER_YEAR = 24  # windows of 10 trading days per demo year
FULL_CASH_PER_YEAR = 3  # windows of ~60 trading days per demo year


def notices_for(source: object, start: dt.date, end: dt.date) -> tuple[pl.DataFrame | None, str]:
    """(notices overlapping [start, end] or None when the source publishes none, a note for metadata)."""
    if isinstance(source, DemoMarket):
        return demo_notices(source, start, end), DEMO_NOTE
    return None, LIVE_NOT_PUBLISHED


def demo_notices(market: DemoMarket, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The demo market's notices overlapping [start, end]. Drawn once over the whole demo grid from the
    seed alone, so a day's flags do not depend on which range was asked for."""
    return _demo_grid_notices(market).filter((pl.col("start_date") <= end) & (pl.col("end_date") >= start))


def _demo_grid_notices(market: DemoMarket) -> pl.DataFrame:
    rng = np.random.default_rng([market.seed, market.size, 0x7E57])
    days = market.days
    years = max(1, len(days) // 261)
    candidates = np.flatnonzero(~market.universe.is_etf)
    rows = []
    for kind, per_year, length in (
        ("disposition", DISPOSITION_PER_YEAR, 10),
        ("full_cash_delivery", FULL_CASH_PER_YEAR, 60),
    ):
        count = per_year * years
        stocks = rng.choice(candidates, size=count)
        starts = rng.integers(0, len(days) - length, size=count)
        for stock, first in zip(stocks, starts, strict=True):
            rows.append(
                (
                    str(market.universe.stock_id[stock]),
                    kind,
                    days[first].astype(dt.date),
                    days[first + length - 1].astype(dt.date),
                )
            )
    return pl.DataFrame(rows, schema=NOTICES_SCHEMA, orient="row").sort("start_date", "stock_id", "kind")
