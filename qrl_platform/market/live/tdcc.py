"""TDCC 集保戶股權分散表 (open data set 1-5): the weekly shareholding distribution of every security.

`GET {QRL_TDCC_BASE_URL}/getOD.ashx?id=1-5` answers one CSV (UTF-8, often with a byte-order mark):

    資料日期,證券代號,持股分級,人數,股數,占集保庫存數比例%
    20240308,2330,1,912345,123456789,0.47

Levels 1–15 are holding bands (1–999 shares … over 1,000,000 shares), 16 is TDCC's 差異數調整 line
(a reconciliation entry, not holders — dropped here) and 17 the total. There is no date parameter:
TDCC serves the **latest data date only**. So the Saturday schedule archives each week while it is
the latest, and asking for any other week fails clearly: an older week can no longer be
fetched, a newer one is not published yet. A week whose Friday was a holiday carries the data of
its last trading day, which is accepted for that week.

The answer is cached (under the week) only once it parsed and its data date matched, so a backfill
of archived weeks never asks again. This layout was checked against a recording (shared payload
reference, § TDCC: UTF-8 with BOM, CRLF, unquoted); a change in it fails loudly, naming the field.
"""

from __future__ import annotations

import csv
import datetime as dt
import io

import polars as pl

from qrl_platform.calendar import is_trading_day
from qrl_platform.market import schema
from qrl_platform.market.live.twse import (
    Endpoint,
    NotPublishedYet,
    Where,
    frame,
    number,
    positions,
    require_code,
    rows_of,
    text,
)
from qrl_platform.market.schema import SHAREHOLDING_DISTRIBUTION, BadMarketData

ENDPOINT = Endpoint("TDCC", "opendata 1-5", "/getOD.ashx", {"id": "1-5"})
FIELDS = ["資料日期", "證券代號", "持股分級", "人數", "股數", "占集保庫存數比例%"]
ADJUSTMENT_LEVEL = 16
# TDCC posts a Friday's distribution the next day: that is when it becomes known (point-in-time).
PUBLICATION_LAG = dt.timedelta(days=1)


class WeekNoLongerServed(BadMarketData):
    """TDCC has moved on to a later week; this one can only come from our own archive."""


def decode(body: bytes) -> dict:
    """CSV body → {"fields": header, "data": rows} (the table shape the shared helpers check)."""
    content = body.decode("utf-8-sig")
    if content.lstrip().startswith("<"):
        raise ValueError("an HTML page, not CSV")
    lines = [row for row in csv.reader(io.StringIO(content)) if any(cell.strip() for cell in row)]
    if not lines:
        raise ValueError("an empty body")
    return {"fields": lines[0], "data": lines[1:]}


def served_date(rows: list[list], at: dict[str, int], where: Where) -> dt.date:
    """The one data date of the answer (every row carries it)."""
    dates = {text(row[at["資料日期"]]) for row in rows}
    if len(dates) != 1:
        raise where.bad(f"field '資料日期' holds {len(dates)} different dates ({sorted(dates)[:3]}), expected one")
    raw = dates.pop()
    try:
        return dt.datetime.strptime(raw, "%Y%m%d").date()
    except ValueError:
        raise where.bad(f"field '資料日期' is not a YYYYMMDD date ({raw!r})") from None


def check_week(served: dt.date, week: dt.date, where: Where) -> None:
    """The answer must be the week's: its Friday, or its last trading day when the Friday was closed."""
    if served == week or (
        week - dt.timedelta(days=7) < served < week
        and not any(is_trading_day(served + dt.timedelta(days=n)) for n in range(1, (week - served).days + 1))
    ):
        return
    if served < week:
        raise NotPublishedYet(
            f"{where.endpoint.label} {week}: TDCC still serves {served}; the week of {week} is published the "
            "day after — try again then"
        )
    raise WeekNoLongerServed(
        f"{where.endpoint.label} {week}: TDCC serves only its latest week ({served}); the week of {week} can no "
        "longer be fetched. Weeks are kept by archiving each one while it is the latest (shareholding_schedule, "
        "Saturdays)."
    )


def parse(table: dict, week: dt.date) -> pl.DataFrame:
    """The week's distribution in the canonical schema; raises naming the field on anything unexpected."""
    where = Where(ENDPOINT, week)
    if not table.get("data"):
        raise where.bad("field 'data': the answer has a header but no rows")
    at = positions(table.get("fields"), FIELDS, where)
    rows = rows_of(table, where)
    served = served_date(rows, at, where)
    check_week(served, week, where)
    records = []
    for i, row in enumerate(rows):
        code = require_code(text(row[at["證券代號"]]), i, where)
        level = number(row[at["持股分級"]], where, "持股分級", code, integer=True, required=True)
        if level == ADJUSTMENT_LEVEL:
            continue
        if not 1 <= level <= 17:
            raise where.bad(f"field '持股分級' is {level} for stock {code}, expected 1–17")
        records.append(
            {
                "stock_id": code,
                "week": week,
                "level": level,
                "holders": number(row[at["人數"]], where, "人數", code, integer=True, required=True),
                "shares": number(row[at["股數"]], where, "股數", code, integer=True, required=True),
                "pct": number(row[at["占集保庫存數比例%"]], where, "占集保庫存數比例%", code, required=True),
                "published_on": served + PUBLICATION_LAG,
            }
        )
    distribution = frame(records, SHAREHOLDING_DISTRIBUTION)
    return schema.conform("shareholding_distribution", distribution, context=f"TDCC week {week}").sort(
        "stock_id", "level"
    )
