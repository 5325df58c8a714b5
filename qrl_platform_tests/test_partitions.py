import datetime as dt

import dagster as dg
import pytest

from qrl_platform import calendar
from qrl_platform.calendar import day_status, previous_trading_days, trading_days
from qrl_platform.defs.partitions import quarter_hour, trading_day
from qrl_platform.settings import settings

TAIPEI = dt.timezone(dt.timedelta(hours=8))


@pytest.mark.parametrize(
    ("date", "reason_part"),
    [
        ("2024-02-08", "XTAI"),  # Lunar New Year eve
        ("2024-07-24", "XTAI"),  # Typhoon Gaemi, in XTAI
        ("2024-07-25", "XTAI"),
        ("2024-10-31", "Typhoon Kong-rey"),  # missing from XTAI: the override list closes it
        ("2024-03-09", "weekend"),
    ],
)
def test_closed_days_have_a_reason(date, reason_part):
    status = day_status(date)
    assert not status.is_open
    assert reason_part in status.reason


def test_ordinary_days_are_open():
    assert day_status("2024-10-30").is_open
    assert day_status("2024-03-05").is_open


@pytest.fixture
def install_overrides():
    """What the wiring does when it reads the settings (the code location's resources, the CLI); the
    calendar's previous file is put back afterwards."""
    previous = calendar.use_extra_overrides(None)
    calendar.use_extra_overrides(previous)
    yield lambda: calendar.use_extra_overrides(settings().calendar_overrides)
    calendar.use_extra_overrides(previous)


def test_user_override_file_closes_a_day(tmp_path, monkeypatch, install_overrides):
    extra = tmp_path / "closures.yaml"
    extra.write_text('closed:\n  "2024-03-05": "Typhoon (announced this morning)"\n', encoding="utf-8")
    monkeypatch.setenv("QRL_CALENDAR_OVERRIDES", str(extra))
    install_overrides()
    status = day_status("2024-03-05")
    assert (status.is_open, status.reason) == (False, "Typhoon (announced this morning)")


def test_bad_override_date_names_the_file(tmp_path, monkeypatch, install_overrides):
    extra = tmp_path / "bad.yaml"
    extra.write_text('closed:\n  "2024-13-45": "nonsense"\n', encoding="utf-8")
    monkeypatch.setenv("QRL_CALENDAR_OVERRIDES", str(extra))
    install_overrides()
    with pytest.raises(ValueError, match=r"bad.yaml:closed: '2024-13-45' is not a date"):
        day_status("2024-03-05")


def test_trading_day_partitions_keep_friday_visible_over_the_weekend():
    with dg.partition_loading_context(effective_dt=dt.datetime(2024, 3, 9, 12, tzinfo=TAIPEI)):  # Saturday
        assert trading_day.get_last_partition_key() == "2024-03-08"
    with dg.partition_loading_context(effective_dt=dt.datetime(2024, 3, 11, 9, tzinfo=TAIPEI)):  # Monday
        assert trading_day.get_last_partition_key() == "2024-03-11"
    keys = trading_day.get_partition_keys_in_range(dg.PartitionKeyRange("2024-03-07", "2024-03-12"))
    assert keys == ["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-12"]
    assert trading_day.get_first_partition_key() == "2020-01-02"


def test_holidays_still_have_partitions():
    # Closed days are materialised as empty, not skipped: their partitions exist.
    assert trading_day.has_partition_key("2024-10-31")
    assert trading_day.has_partition_key("2024-02-08")


def test_quarter_hour_keys_are_utc_quarter_hours():
    with dg.partition_loading_context(effective_dt=dt.datetime(2026, 11, 22, 7, 52, tzinfo=dt.UTC)):
        assert quarter_hour.get_last_partition_key() == "2026-11-22-07:30"


def test_trading_day_helpers():
    days = trading_days("2024-10-28", "2024-11-01")
    assert [d.isoformat() for d in days] == ["2024-10-28", "2024-10-29", "2024-10-30", "2024-11-01"]
    window = previous_trading_days("2024-11-01", 3)
    assert [d.isoformat() for d in window] == ["2024-10-29", "2024-10-30", "2024-11-01"]
