"""When each raw table's data for a partition is normally published (Asia/Taipei), and whether it is due.

Plain Python (no Dagster): the availability sensor and the live source ask
`is_due(table, partition_date, now)` before a table's ingestion, so a table that is not out yet is a skip with its reason, never a failed
run. Each table has one publication rule and a time of day, configurable through the environment
(`QRL_PUBLISH_<TABLE>=HH:MM`, e.g. `QRL_PUBLISH_MARGIN_BALANCES=21:30`; the wiring passes
`Settings.publication_times()` as `times`). The default time, the rule and the reason for it are part of
each table's declaration (`qrl_platform/market/tables.py`); `timetable_markdown()` renders them as the
table in docs/market-sources.md.

The periodic tables are due only once their deadline has passed, the same rule the live source applies
before it asks MOPS (`LiveMarketSource._after_deadline`). Their schedules follow from the same rules
(`SCHEDULED_RULES`): a schedule runs on the day a partition falls due and ingests that partition.
Whether a day is a trading day is the calendar's business, not this module's: a closed day's partition
is materialised empty by the ingestion without any request.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
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


ONE_DAY = dt.timedelta(days=1)


def _run_days(days: list[dt.date]) -> tuple[str, ...]:
    """Cron day fields ("<day of month> <month> *") for each calendar day of `days`, in calendar order."""
    return tuple(f"{day.day} {day.month} *" for day in sorted(days, key=lambda day: (day.month, day.day)))


def _month_due_on(run_day: dt.date) -> dt.date | None:
    """The month whose revenue falls due on `run_day` (the day after the 10th of the next month)."""
    last_month = (run_day.replace(day=1) - ONE_DAY).replace(day=1)
    return last_month if revenue_deadline(last_month) + ONE_DAY == run_day else None


def _quarter_due_on(run_day: dt.date) -> dt.date | None:
    """The fiscal quarter (its first day) whose statutory deadline was the day before `run_day`."""
    for year in (run_day.year, run_day.year - 1):  # Q4's deadline falls in the next year
        for quarter in (1, 2, 3, 4):
            if statutory_deadline(year, quarter) + ONE_DAY == run_day:
                return dt.date(year, 3 * quarter - 2, 1)
    return None


def _week_due_on(run_day: dt.date) -> dt.date | None:
    """TDCC's Friday data date, archived the Saturday after."""
    return run_day - ONE_DAY if run_day.weekday() == 5 else None


@dataclass(frozen=True)
class ScheduledRule:
    """How the publication rule of a slower-cadence table becomes its schedule: the schedule runs on the
    days the rule makes a partition due (at the table's `schedule_time`) and ingests that partition."""

    run_days: tuple[str, ...]  # cron day fields "<day of month> <month> <day of week>", one cron each
    due_on: Callable[[dt.date], dt.date | None]  # the partition falling due on a run day; None on other days
    description: str  # the schedule's description; {time} and {subject} come from the table's declaration


# The one table from a publication rule to a schedule. A trading-day rule (same_day) is not in it: those
# tables are ingested by the availability sensor as soon as they are due.
SCHEDULED_RULES: dict[tables.PublishRule, ScheduledRule] = {
    "after_revenue_deadline": ScheduledRule(
        run_days=(f"{(revenue_deadline(dt.date(2001, 1, 1)) + ONE_DAY).day} * *",),  # the 11th of every month
        due_on=_month_due_on,
        description="The 11th at {time}: last month's {subject} (companies publish by the 10th).",
    ),
    "after_statutory_deadline": ScheduledRule(
        # Apr 1 (Q4 of the year before), May 16, Aug 15, Nov 15
        run_days=_run_days([statutory_deadline(2001, quarter) + ONE_DAY for quarter in (1, 2, 3, 4)]),
        due_on=_quarter_due_on,
        description="The day after each statutory filing deadline (Mar 31, May 15, Aug 14, Nov 14): "
        "that quarter's {subject}.",
    ),
    "next_day": ScheduledRule(
        run_days=("* * 6",),  # Saturday
        due_on=_week_due_on,
        description="Saturday {time}: archive the {subject} of Friday (TDCC keeps only the latest week).",
    ),
}


def _scheduled_rule(table: tables.RawTable) -> ScheduledRule:
    if table.publish_rule not in SCHEDULED_RULES:
        raise KeyError(
            f"raw table {table.name}: publication rule {table.publish_rule!r} has no schedule (trading-day tables "
            f"are ingested by the availability sensor); scheduled rules: {sorted(SCHEDULED_RULES)}"
        )
    return SCHEDULED_RULES[table.publish_rule]


def schedule_cron(table: tables.RawTable) -> str | list[str]:
    """The cron of a slower table's schedule (Asia/Taipei): its rule's run days at its `schedule_time`;
    one cron as a string, several as a list (as Dagster takes them)."""
    at = table.schedule_time
    crons = [f"{at.minute} {at.hour} {days}" for days in _scheduled_rule(table).run_days]
    return crons[0] if len(crons) == 1 else crons


def partition_due_on(table: tables.RawTable, run_day: dt.date) -> dt.date:
    """The partition (its date) a slower table's schedule ingests when it runs on `run_day` (Taipei)."""
    partition = _scheduled_rule(table).due_on(run_day)
    if partition is None:
        raise ValueError(f"{table.name}: no partition falls due on {run_day} ({table.publish_rule})")
    return partition


def schedule_description(table: tables.RawTable) -> str:
    """The description of a slower table's schedule, in words."""
    at = table.schedule_time  # a clear error for a table without a schedule of its own
    return _scheduled_rule(table).description.format(time=f"{at:%H:%M}", subject=table.schedule.subject)


def timetable_markdown() -> str:
    """The publication timetable as the Markdown table of docs/market-sources.md."""
    lines = ["| table | due | default | variable | why |", "|---|---|---|---|---|"]
    lines += [
        f"| `{table.name}` | {RULE_TEXT[table.publish_rule]} | {table.publish_at:%H:%M} | "
        f"`{table.publish_variable}` | {table.publish_why} |"
        for table in tables.RAW
    ]
    return "\n".join(lines)
