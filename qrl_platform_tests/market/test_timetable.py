"""The publication timetable: when each raw table's data for a partition is normally out (Taipei)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from qrl_platform.market.schema import RAW_TABLES
from qrl_platform.market.timetable import TAIPEI, TIMETABLE, due_at, is_due, publication_time, timetable_markdown
from qrl_platform.settings import settings

MONDAY = dt.date(2026, 9, 7)


def taipei(day: dt.date, hh: int, mm: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=TAIPEI)


@pytest.fixture(autouse=True)
def no_overrides(monkeypatch):
    for publication in TIMETABLE.values():
        monkeypatch.delenv(publication.env, raising=False)


def test_every_raw_table_has_a_publication_time():
    assert set(TIMETABLE) == set(RAW_TABLES)


@pytest.mark.parametrize(
    ("table", "hh", "mm"),
    [("daily_quotes", 14, 30), ("institutional_flows", 15, 30), ("valuations", 15, 30), ("margin_balances", 21, 0)],
)
def test_daily_tables_are_due_on_the_day_at_their_time(table, hh, mm):
    due = taipei(MONDAY, hh, mm)
    assert due_at(table, MONDAY) == due
    assert is_due(table, MONDAY, due - dt.timedelta(minutes=1))[0] is False
    assert is_due(table, MONDAY, due) == (
        True,
        f"{table} for 2026-09-07 is due since 2026-09-07 {hh:02d}:{mm:02d} Taipei "
        f"(QRL_PUBLISH_{table.upper()}={hh:02d}:{mm:02d})",
    )


def test_at_1635_quotes_flows_and_valuations_are_due_but_not_margin():
    at_1635 = taipei(MONDAY, 16, 35)
    due = {table: is_due(table, MONDAY, at_1635)[0] for table in ("daily_quotes", "institutional_flows", "valuations")}
    assert due == {"daily_quotes": True, "institutional_flows": True, "valuations": True}
    assert is_due("margin_balances", MONDAY, at_1635) == (
        False,
        "margin_balances for 2026-09-07 is not published yet: normally out at 2026-09-07 21:00 Taipei "
        "(QRL_PUBLISH_MARGIN_BALANCES=21:00); it is 2026-09-07 16:35",
    )


def test_now_in_another_time_zone_is_converted_and_naive_is_taipei():
    utc_1259 = dt.datetime(2026, 9, 7, 12, 59, tzinfo=ZoneInfo("UTC"))  # 20:59 Taipei
    assert is_due("margin_balances", MONDAY, utc_1259)[0] is False
    assert is_due("margin_balances", MONDAY, utc_1259 + dt.timedelta(minutes=1))[0] is True
    assert is_due("daily_quotes", MONDAY, dt.datetime(2026, 9, 7, 14, 30))[0] is True


def test_times_are_configurable_through_the_environment(monkeypatch):
    monkeypatch.setenv("QRL_PUBLISH_MARGIN_BALANCES", "21:45")
    times = settings().publication_times()  # what the sensors pass
    assert publication_time("margin_balances", times) == dt.time(21, 45)
    assert is_due("margin_balances", MONDAY, taipei(MONDAY, 21, 30), times)[0] is False
    assert is_due("margin_balances", MONDAY, taipei(MONDAY, 21, 45), times)[1].endswith(
        "(QRL_PUBLISH_MARGIN_BALANCES=21:45)"
    )
    monkeypatch.setenv("QRL_PUBLISH_DAILY_QUOTES", "half past two")
    with pytest.raises(ValueError, match=r"QRL_PUBLISH_DAILY_QUOTES must be a Taipei time of day HH:MM"):
        settings()


def test_monthly_revenue_is_due_after_the_10th_of_the_next_month(monkeypatch):
    july = dt.date(2026, 7, 1)
    assert due_at("monthly_revenue", july) == taipei(dt.date(2026, 8, 11), 0)
    assert is_due("monthly_revenue", july, taipei(dt.date(2026, 8, 10), 23, 59))[0] is False
    assert is_due("monthly_revenue", july, taipei(dt.date(2026, 8, 11), 0))[0] is True
    assert due_at("monthly_revenue", dt.date(2026, 12, 1)) == taipei(dt.date(2027, 1, 11), 0)  # across the year
    monkeypatch.setenv("QRL_PUBLISH_MONTHLY_REVENUE", "08:00")
    assert due_at("monthly_revenue", july, settings().publication_times()) == taipei(dt.date(2026, 8, 11), 8)
    with pytest.raises(ValueError, match="not the first day of a month"):
        due_at("monthly_revenue", dt.date(2026, 7, 2))


@pytest.mark.parametrize(
    ("quarter_start", "first_due_day"),
    [
        (dt.date(2026, 1, 1), dt.date(2026, 5, 16)),
        (dt.date(2026, 4, 1), dt.date(2026, 8, 15)),
        (dt.date(2026, 7, 1), dt.date(2026, 11, 15)),
        (dt.date(2026, 10, 1), dt.date(2027, 4, 1)),  # annual report: March 31 of the next year
    ],
)
def test_financials_are_due_after_the_statutory_deadline(quarter_start, first_due_day):
    assert due_at("financials", quarter_start) == taipei(first_due_day, 0)
    assert is_due("financials", quarter_start, taipei(first_due_day, 0) - dt.timedelta(seconds=1))[0] is False


def test_shareholding_is_due_on_the_saturday_after_the_friday():
    friday = dt.date(2026, 9, 11)
    assert due_at("shareholding_distribution", friday) == taipei(dt.date(2026, 9, 12), 10)
    assert is_due("shareholding_distribution", friday, taipei(friday, 23))[0] is False
    with pytest.raises(ValueError, match="not a Friday"):
        due_at("shareholding_distribution", MONDAY)


def test_an_unknown_table_is_named():
    with pytest.raises(KeyError, match="no publication time for table 'quotes'"):
        is_due("quotes", MONDAY, taipei(MONDAY, 15))


def test_corporate_actions_are_due_before_the_open_on_the_ex_date():
    assert due_at("corporate_actions", MONDAY) == taipei(MONDAY, 8)
    assert is_due("corporate_actions", MONDAY, taipei(MONDAY, 7, 59))[0] is False
    assert is_due("corporate_actions", MONDAY, taipei(MONDAY, 9))[0] is True


def test_the_docs_timetable_is_the_one_rendered_from_the_declarations():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "market-sources.md").read_text(encoding="utf-8")
    rendered = timetable_markdown()
    assert rendered.count("\n") == 1 + len(RAW_TABLES)  # header, rule, one row per raw table
    assert rendered in docs, "docs/market-sources.md's timetable differs from timetable_markdown(); paste it again"
