"""When each raw table's data for a partition is normally published (Asia/Taipei), and whether it is due.

Plain Python (no Dagster): sensors and schedules ask `is_due(table, partition_date, now)` before
launching a table's ingestion, so a table that is not out yet is a skip with its reason, never a failed
run. Each table has one publication rule and a time of day, configurable through the environment
(`QRL_PUBLISH_<TABLE>=HH:MM`, e.g. `QRL_PUBLISH_MARGIN_BALANCES=21:30`; the wiring passes
`Settings.publication_times()` as `times`). The default time, the rule and the reason for it are part of
each table's declaration (`qrl_platform/market/tables.py`); `timetable_markdown()` renders them as the
table in docs/market-sources.md.

The periodic tables are due only once their deadline has passed, the same rule the live source applies
before it asks MOPS (`LiveMarketSource._after_deadline`). Whether a day is a trading day is the
calendar's business, not this module's: a closed day's partition is materialised empty by the ingestion
without any request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from qrl_platform.market import tables

TAIPEI = ZoneInfo("Asia/Taipei")


def revenue_deadline(month: dt.date) -> dt.date:
    """Companies publish a month's revenue by the 10th of the next month."""
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=10)


def statutory_deadline(year: int, quarter: int) -> dt.date:
    """Taiwan filing deadlines: Q1 May 15, Q2 Aug 14, Q3 Nov 14, annual (Q4) Mar 31 of the next year."""
    return {1: dt.date(year, 5, 15), 2: dt.date(year, 8, 14), 3: dt.date(year, 11, 14), 4: dt.date(year + 1, 3, 31)}[
        quarter
    ]


@dataclass(frozen=True)
class Publication:
    table: str
    default: dt.time
    rule: tables.PublishRule

    @property
    def env(self) -> str:
        return f"QRL_PUBLISH_{self.table.upper()}"


TIMETABLE: dict[str, Publication] = {
    table.name: Publication(table.name, table.publish_at, table.publish_rule) for table in tables.RAW
}

# How each rule reads in the docs' timetable (docs/market-sources.md, rendered by `timetable_markdown`).
RULE_TEXT = {
    "same_day": "the trading day D, at",
    "after_revenue_deadline": "the day after the 10th of the next month, at",
    "after_statutory_deadline": "the day after the statutory deadline, at",
    "next_day": "the Saturday after the Friday week, at",
}


def publication_time(table: str, times: Mapping[str, dt.time] | None = None) -> dt.time:
    """The table's time of day: its entry in `times` (the set `QRL_PUBLISH_<TABLE>` variables,
    `Settings.publication_times()`) when there is one, else the default above."""
    publication = _publication(table)
    return (times or {}).get(table, publication.default)


def due_at(table: str, partition_date: dt.date, times: Mapping[str, dt.time] | None = None) -> dt.datetime:
    """When the table's data for the partition is normally out (an aware Taipei datetime)."""
    publication = _publication(table)
    if publication.rule == "same_day":
        day = partition_date
    elif publication.rule == "after_revenue_deadline":
        if partition_date.day != 1:
            raise ValueError(f"{table}: partition {partition_date} is not the first day of a month")
        day = revenue_deadline(partition_date) + dt.timedelta(days=1)
    elif publication.rule == "after_statutory_deadline":
        if partition_date.month not in (1, 4, 7, 10) or partition_date.day != 1:
            raise ValueError(f"{table}: partition {partition_date} is not the first day of a fiscal quarter")
        quarter = (partition_date.month - 1) // 3 + 1
        day = statutory_deadline(partition_date.year, quarter) + dt.timedelta(days=1)
    else:  # next_day: TDCC's Friday data on Saturday
        if partition_date.weekday() != 4:
            raise ValueError(f"{table}: partition {partition_date} is not a Friday (TDCC data date)")
        day = partition_date + dt.timedelta(days=1)
    return dt.datetime.combine(day, publication_time(table, times), tzinfo=TAIPEI)


def is_due(
    table: str, partition_date: dt.date, now: dt.datetime, times: Mapping[str, dt.time] | None = None
) -> tuple[bool, str]:
    """(due, reason): is the table's data for `partition_date` normally published by `now`?

    `now` may be in any time zone; a naive datetime is read as Taipei time."""
    when = now.replace(tzinfo=TAIPEI) if now.tzinfo is None else now.astimezone(TAIPEI)
    due = due_at(table, partition_date, times)
    source = f"{_publication(table).env}={publication_time(table, times):%H:%M}"
    if when >= due:
        return True, f"{table} for {partition_date} is due since {due:%Y-%m-%d %H:%M} Taipei ({source})"
    return False, (
        f"{table} for {partition_date} is not published yet: normally out at {due:%Y-%m-%d %H:%M} Taipei "
        f"({source}); it is {when:%Y-%m-%d %H:%M}"
    )


def _publication(table: str) -> Publication:
    if table not in TIMETABLE:
        raise KeyError(f"no publication time for table {table!r}; known: {sorted(TIMETABLE)}")
    return TIMETABLE[table]


def timetable_markdown() -> str:
    """The publication timetable as the Markdown table of docs/market-sources.md."""
    lines = ["| table | due | default | variable | why |", "|---|---|---|---|---|"]
    lines += [
        f"| `{table.name}` | {RULE_TEXT[table.publish_rule]} | {table.publish_at:%H:%M} | "
        f"`{table.publish_variable}` | {table.publish_why} |"
        for table in tables.RAW
    ]
    return "\n".join(lines)
