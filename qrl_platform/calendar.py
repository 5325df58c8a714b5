"""The Taiwan trading calendar and the platform's clock : one Taipei zone, one "closing data
is out" time, and why a day is closed.

Exchange holidays and typhoon closures still have (weekday) partitions, which materialise as empty
with `market_closed=true` rather than failing. The calendar answers *why* a day is closed: XTAI from exchange_calendars, then the override list shipped
in the repo (XTAI misses same-morning typhoon closures such as 2024-10-31), then — at run time — the
live source saying it has no data for the date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import yaml

TAIPEI_NAME = "Asia/Taipei"
TAIPEI = ZoneInfo(TAIPEI_NAME)


def utc_now() -> dt.datetime:
    """The system clock, timezone-aware (the one place the calendar reads it; tests replace it)."""
    return dt.datetime.now(dt.UTC)


TRADING_DAY_START = "2020-01-02"
DATE_FMT = "%Y-%m-%d"
QUARTER_HOUR_FMT = "%Y-%m-%d-%H:%M"  # the QRL side's UTC quarter-hour partition keys

# TWSE/TPEx publish the day's closing quotes after the 13:30 close, by about 14:30. Before this
# time a "no data" answer for today means "not yet", never "closed".
CLOSING_DATA_OUT = dt.time(14, 30)


def taipei_now() -> dt.datetime:
    return utc_now().astimezone(TAIPEI)


def taipei_today(now: dt.datetime | None = None) -> dt.date:
    """Today's date in Asia/Taipei (UTC+8), whatever the host's timezone: from 16:00 UTC it is already
    tomorrow in Taipei. `now` must be timezone-aware (a naive time has no defined Taipei date)."""
    now = utc_now() if now is None else now
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"taipei_today: now must be timezone-aware, got naive {now.isoformat()}")
    return now.astimezone(TAIPEI).date()


def closing_data_out(now: dt.datetime) -> bool:
    """Whether today's closing data is normally published at `now` (Taipei wall clock)."""
    return now.astimezone(TAIPEI).time() >= CLOSING_DATA_OUT


@dataclass(frozen=True)
class DayStatus:
    date: dt.date
    is_open: bool
    reason: str  # why it is closed ("" when open)


# The operator's own closure file (QRL_CALENDAR_OVERRIDES), next to the list shipped in the repo. The
# calendar answers for every process-wide question (partitions, sensors, ingestion, factors), so the
# wiring installs it once when it reads the settings (the code location's resources, the CLI) rather
# than every caller passing it.
_extra_overrides: Path | None = None


def use_extra_overrides(path: str | Path | None) -> Path | None:
    """Add `path` (same shape as calendar_overrides.yaml; None: none) to the shipped overrides from now
    on, in this process. Returns the file used before, so a caller can put it back."""
    global _extra_overrides
    previous, _extra_overrides = _extra_overrides, Path(path) if path else None
    return previous


def _override_files() -> list[Path]:
    files = [Path(__file__).with_name("calendar_overrides.yaml")]
    if _extra_overrides is not None:
        files.append(_extra_overrides)
    return files


@lru_cache(maxsize=4)
def _load_overrides(files: tuple[Path, ...]) -> tuple[dict[dt.date, str], set[dt.date]]:
    closed: dict[dt.date, str] = {}
    opened: set[dt.date] = set()
    for path in files:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, reason in (raw.get("closed") or {}).items():
            closed[parse_date(str(key), field=f"{path.name}:closed")] = str(reason)
        for key in raw.get("open") or {}:
            opened.add(parse_date(str(key), field=f"{path.name}:open"))
    return closed, opened


@lru_cache(maxsize=1)
def _xtai():
    import exchange_calendars as xcals

    return xcals.get_calendar("XTAI")


@lru_cache(maxsize=1)
def _xtai_holiday_names() -> dict[dt.date, str]:
    cal = _xtai()
    names: dict[dt.date, str] = {}
    try:
        holidays = cal.regular_holidays.holidays(cal.first_session, cal.last_session, return_name=True)
        names.update({ts.date(): str(name) for ts, name in holidays.items()})
    except Exception:  # names are a nicety; the session list is what decides
        pass
    return names


def parse_date(value: str | dt.date, *, field: str = "date") -> dt.date:
    """Parse YYYY-MM-DD (or a date) with an error that names the field."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError as exc:
        raise ValueError(f"{field}: {value!r} is not a date in YYYY-MM-DD form") from exc


def day_status(date: str | dt.date) -> DayStatus:
    """Whether the Taiwan market trades on `date`, from XTAI and the override list."""
    day = parse_date(date)
    closed, opened = _load_overrides(tuple(_override_files()))
    if day in closed:
        return DayStatus(day, False, closed[day])
    if day in opened:
        return DayStatus(day, True, "")
    if day.weekday() >= 5:
        return DayStatus(day, False, "weekend")
    cal = _xtai()
    if cal.first_session.date() <= day <= cal.last_session.date():
        if not cal.is_session(day.isoformat()):
            name = _xtai_holiday_names().get(day, "exchange holiday")
            return DayStatus(day, False, f"XTAI calendar: {name}")
    return DayStatus(day, True, "")


def is_trading_day(date: str | dt.date) -> bool:
    return day_status(date).is_open


def trading_days(start: str | dt.date, end: str | dt.date) -> list[dt.date]:
    """Open days in [start, end], inclusive."""
    first, last = parse_date(start, field="start"), parse_date(end, field="end")
    days = []
    day = first
    while day <= last:
        if is_trading_day(day):
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def previous_trading_days(end: str | dt.date, count: int) -> list[dt.date]:
    """The `count` open days ending at `end` (inclusive), oldest first — the lookback window."""
    day = parse_date(end, field="end")
    days: list[dt.date] = []
    while len(days) < count:
        if is_trading_day(day):
            days.append(day)
        day -= dt.timedelta(days=1)
        if day < dt.date(2000, 1, 1):
            break
    return days[::-1]


QUARTER_HOUR = dt.timedelta(minutes=15)


def just_finished_quarter_hour(at: dt.datetime) -> str:
    """The partition whose window ended most recently at `at` (07:45 at 08:00 and at 08:14:59)."""
    at = at.astimezone(dt.UTC)
    floor = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
    return (floor - QUARTER_HOUR).strftime(QUARTER_HOUR_FMT)
