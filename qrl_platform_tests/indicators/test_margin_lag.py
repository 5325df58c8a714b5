"""Point in time within the day: chip_indicators for D use the margin of the trading day before D.

MI_MARGN for D comes out around 21:00, after the 16:35 strategies. So a 16:35 run must work without D's
margin, must give the value that a later backfill (with D's margin stored) gives, and across a holiday the
"day before" is the previous *trading* day. Values are hand-computed from the rows written here."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import is_trading_day
from qrl_platform.factors.compute_range import MissingUpstream, compute_range, lag_metadata
from qrl_platform.market import schema
from qrl_platform.storage.frames import FrameStore

TUE, WED, FRI, MON = dt.date(2024, 10, 8), dt.date(2024, 10, 9), dt.date(2024, 10, 11), dt.date(2024, 10, 14)
HOLIDAY = dt.date(2024, 10, 10)  # National Day
MARGIN = {  # date → (margin_balance, margin_limit, short_balance) of stock 1101, in lots
    TUE: (10, 100, 5),
    WED: (50, 200, 10),
    FRI: (80, 200, 20),
    MON: (270, 300, 27),
}


def _quotes(day: dt.date) -> pl.DataFrame:
    row = {
        "stock_id": "1101", "trade_date": day, "market": "TWSE", "name": "台泥", "open": 30.0, "high": 30.5,
        "low": 29.5, "close": 30.0, "volume": 1_000_000, "turnover": 30_000_000, "trades": 500, "change": 0.0,
        "is_etf": False, "is_suspended": False,
    }  # fmt: skip
    return schema.conform("daily_quotes", pl.DataFrame([row]))


def _flows(day: dt.date) -> pl.DataFrame:
    columns = [c for c in schema.INSTITUTIONAL_FLOWS if c not in ("stock_id", "trade_date")]
    return schema.conform(
        "institutional_flows", pl.DataFrame([{"stock_id": "1101", "trade_date": day, **dict.fromkeys(columns, 0)}])
    )


def _margin(day: dt.date) -> pl.DataFrame:
    balance, limit, short = MARGIN[day]
    counts = [c for c in schema.MARGIN_BALANCES if c not in ("stock_id", "trade_date")]
    row = {"stock_id": "1101", "trade_date": day, **dict.fromkeys(counts, 0)}
    row.update(margin_balance=balance, margin_limit=limit, short_balance=short, short_limit=limit)
    return schema.conform("margin_balances", pl.DataFrame([row]))


@pytest.fixture
def store(tmp_path) -> FrameStore:
    frames = FrameStore(str(tmp_path))
    for day in (TUE, WED, FRI, MON):
        frames.write("daily_quotes", day.isoformat(), _quotes(day))
        frames.write("institutional_flows", day.isoformat(), _flows(day))
    for day in (TUE, WED, FRI):  # Monday 16:35: Monday's margin is not out yet
        frames.write("margin_balances", day.isoformat(), _margin(day))
    return frames


def _values(result, day: dt.date, factor: str):
    return result.frames[day].filter(pl.col("stock_id") == "1101")[factor].item()


def test_the_calendar_really_has_a_holiday_between_wednesday_and_friday():
    assert not is_trading_day(HOLIDAY) and all(is_trading_day(d) for d in (TUE, WED, FRI, MON))


def test_a_1635_run_uses_the_previous_trading_days_margin_without_the_days_own(store):
    monday = compute_range(store, "chip_indicators", [MON])
    assert _values(monday, MON, "margin_utilization") == pytest.approx(80 / 200 * 100)  # Friday's row
    assert _values(monday, MON, "short_margin_ratio") == pytest.approx(20 / 80 * 100)
    assert (
        "margin_balances" not in monday.history_missing
        or MON.isoformat() not in monday.history_missing["margin_balances"]
    )


def test_across_the_holiday_friday_uses_wednesdays_margin(store):
    friday = compute_range(store, "chip_indicators", [FRI])
    assert lag_metadata(friday, FRI)["lagged_source_days"] == {"margin_balances": "2024-10-09"}
    assert _values(friday, FRI, "margin_utilization") == pytest.approx(50 / 200 * 100)
    assert _values(friday, FRI, "short_margin_ratio") == pytest.approx(10 / 50 * 100)


def test_a_backfill_after_the_evening_stores_what_the_live_run_saw(store):
    live = compute_range(store, "chip_indicators", [MON])
    store.write("margin_balances", MON.isoformat(), _margin(MON))  # 21:00: Monday's margin arrives
    backfill = compute_range(store, "chip_indicators", [WED, FRI, MON])
    assert backfill.frames[MON].equals(live.frames[MON])
    assert [_values(backfill, d, "margin_utilization") for d in (WED, FRI, MON)] == pytest.approx([10.0, 25.0, 40.0])


def test_the_previous_days_margin_is_required(store, tmp_path):
    store.fs.rm(store.path("margin_balances", FRI.isoformat()))
    with pytest.raises(MissingUpstream, match=r"upstream margin_balances partition\(s\) 2024-10-11 not materialised"):
        compute_range(store, "chip_indicators", [MON])
