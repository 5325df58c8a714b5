"""Chip factors on hand-worked cases: flows as % of volume, trust streak, margin, big holders."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.factors import chip
from qrl_platform.factors.chip import TRUST_STREAK_CAP

START = dt.date(2024, 1, 1)


def _dates(n: int) -> list[dt.date]:
    # compute() counts rows per stock, not calendar days; consecutive dates keep the cases readable.
    return [START + dt.timedelta(days=i) for i in range(n)]


def _quotes(stock: str, volumes: list[int]) -> pl.DataFrame:
    return pl.DataFrame({"stock_id": stock, "trade_date": _dates(len(volumes)), "volume": volumes})


def _flows(stock: str, foreign: list[int], trust: list[int] | None = None, dealer: list[int] | None = None):
    n = len(foreign)
    return pl.DataFrame(
        {
            "stock_id": stock,
            "trade_date": _dates(n),
            "foreign_net": foreign,
            "trust_net": trust or [0] * n,
            "dealer_net": dealer or [0] * n,
        }
    )


def _margin(stock: str, balance: list[int], limit: int = 1000, short: int = 50) -> pl.DataFrame:
    n = len(balance)
    return pl.DataFrame(
        {
            "stock_id": stock,
            "trade_date": _dates(n),
            "margin_balance": balance,
            "margin_limit": [limit] * n,
            "short_balance": [short] * n,
        }
    )


def _column(out: pl.DataFrame, stock: str, factor: str) -> list:
    return out.filter(pl.col("stock_id") == stock).sort("trade_date")[factor].to_list()


def test_net_buy_as_percent_of_volume_over_1_5_20_days():
    n = 25
    out = chip.compute(
        _quotes("A", [1000] * n), _flows("A", [10 * i for i in range(n)], dealer=[-5] * n), _margin("A", [100] * n)
    )
    pct1, pct5, pct20 = (_column(out, "A", f"foreign_net_pct_{d}") for d in (1, 5, 20))
    assert pct1[3] == pytest.approx(30 / 1000 * 100)
    assert pct5[3] is None and pct5[4] == pytest.approx((0 + 10 + 20 + 30 + 40) / 5000 * 100)
    assert pct20[18] is None and pct20[19] == pytest.approx(sum(10 * i for i in range(20)) / 20000 * 100)
    assert pct20[24] == pytest.approx(sum(10 * i for i in range(5, 25)) / 20000 * 100)
    assert _column(out, "A", "dealer_net_pct_5")[10] == pytest.approx(-0.5)
    assert _column(out, "A", "trust_net_pct_1")[10] == 0.0


def test_suspended_days_count_as_days_without_volume():
    volumes = [1000, 1000, 0, 1000, 1000, 1000]  # day 2 suspended: no volume, no flows
    out = chip.compute(_quotes("S", volumes), _flows("S", [100, 100, 0, 100, 100, 100]), _margin("S", [100] * 6))
    assert _column(out, "S", "foreign_net_pct_1")[2] is None  # 0 / 0
    assert _column(out, "S", "foreign_net_pct_5")[4] == pytest.approx(400 / 4000 * 100)
    assert _column(out, "S", "foreign_net_pct_5")[5] == pytest.approx(400 / 4000 * 100)


def test_trust_buy_streak_counts_consecutive_net_buy_days():
    trust = [5, -1, 3, 4, 0, 2, 2, 2]
    out = chip.compute(_quotes("T", [1000] * 8), _flows("T", [0] * 8, trust=trust), _margin("T", [100] * 8))
    assert _column(out, "T", "trust_buy_streak") == [1.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 3.0]


def test_trust_buy_streak_is_capped_so_history_length_does_not_matter():
    n = TRUST_STREAK_CAP + 15
    out = chip.compute(_quotes("T", [1000] * n), _flows("T", [0] * n, trust=[1] * n), _margin("T", [100] * n))
    streak = _column(out, "T", "trust_buy_streak")
    assert streak[TRUST_STREAK_CAP - 1] == TRUST_STREAK_CAP
    assert streak[-1] == TRUST_STREAK_CAP


def test_stock_missing_from_a_day_with_flows_had_zero_net_but_a_day_without_flows_is_unknown():
    quotes = pl.concat([_quotes("A", [1000] * 3), _quotes("B", [1000] * 3)])
    # B has no T86 row on day 1 (no institution traded it); nobody has flows on day 2 (ingestion gap).
    flows = pl.concat([_flows("A", [100, 100, 100], trust=[1, 1, 1]), _flows("B", [50, 0, 0], trust=[1, 0, 0])])
    flows = flows.filter(~((pl.col("stock_id") == "B") & (pl.col("trade_date") == _dates(3)[1])))
    flows = flows.filter(pl.col("trade_date") != _dates(3)[2])
    out = chip.compute(quotes, flows, pl.concat([_margin("A", [1] * 3), _margin("B", [1] * 3)]))
    assert _column(out, "B", "foreign_net_pct_1") == [5.0, 0.0, None]
    assert _column(out, "B", "trust_buy_streak") == [1.0, 0.0, None]
    assert _column(out, "A", "trust_buy_streak") == [1.0, 2.0, None]


def test_margin_utilization_short_ratio_and_changes():
    """Margin factors for a day use the previous trading day's margin row (published the evening before)."""
    balance = [100, 110, 120, 130, 140, 150, 0, 170] + [200] * 13 + [300]
    out = chip.compute(
        _quotes("M", [1000] * len(balance)),
        _flows("M", [0] * len(balance)),
        _margin("M", balance, limit=400, short=60),
    )
    assert _column(out, "M", "margin_utilization")[0] is None  # no earlier margin row
    assert _column(out, "M", "margin_utilization")[1] == pytest.approx(100 / 400 * 100)
    assert _column(out, "M", "short_margin_ratio")[2] == pytest.approx(60 / 110 * 100)
    assert _column(out, "M", "short_margin_ratio")[7] is None  # the day before had no margin balance
    change5 = _column(out, "M", "margin_change_5")
    assert change5[5] is None and change5[6] == pytest.approx((150 / 100 - 1) * 100)
    assert change5[12] is None  # five days before the previous day the balance was 0
    change20 = _column(out, "M", "margin_change_20")
    assert change20[20] is None and change20[21] == pytest.approx((200 / 100 - 1) * 100)


def test_stock_without_margin_row_has_null_margin_factors():
    quotes = pl.concat([_quotes("A", [1000] * 3), _quotes("ETF", [1000] * 3)])
    flows = pl.concat([_flows("A", [0, 0, 0]), _flows("ETF", [0, 0, 0])])
    out = chip.compute(quotes, flows, _margin("A", [10, 20, 30]))
    assert _column(out, "ETF", "margin_utilization") == [None, None, None]
    assert _column(out, "A", "margin_utilization") == [None, 1.0, 2.0]  # the day's own 3.0 feeds the next day


def test_margin_for_a_day_is_the_previous_trading_days_across_a_holiday():
    """2024-10-10 (National Day, a Thursday) is closed: Wednesday's margin feeds Friday, Friday's feeds Monday."""
    days = [dt.date(2024, 10, 8), dt.date(2024, 10, 9), dt.date(2024, 10, 11), dt.date(2024, 10, 14)]
    quotes = pl.DataFrame({"stock_id": "H", "trade_date": days, "volume": [1000] * 4})
    flows = pl.DataFrame({"stock_id": "H", "trade_date": days, "foreign_net": 0, "trust_net": 0, "dealer_net": 0})
    margin = pl.DataFrame(
        {
            "stock_id": "H",
            "trade_date": days,
            "margin_balance": [10, 50, 80, 90],
            "margin_limit": [100, 200, 200, 300],
            "short_balance": [5, 10, 20, 45],
        }
    )
    out = chip.compute(quotes, flows, margin)
    assert _column(out, "H", "margin_utilization") == [None, 10.0, 25.0, 40.0]
    assert _column(out, "H", "short_margin_ratio") == [None, 50.0, 20.0, 25.0]


def test_margin_factors_declare_their_publication_lag():
    lags = {f.factor_id: f.lag_days for f in chip.CHIP_FACTORS}
    margin = {"margin_utilization", "short_margin_ratio", "margin_change_5", "margin_change_20"}
    assert {k for k, v in lags.items() if v} == margin and {lags[k] for k in margin} == {chip.MARGIN_LAG_DAYS} == {1}
    assert all(f.as_row()["lag_days"] == f.lag_days for f in chip.CHIP_FACTORS)


def _holders(stock: str, week: dt.date, big: list[float], published_on: dt.date | None) -> pl.DataFrame:
    """Levels 1–15 + 17; levels 12–15 carry `big` percent, the rest shares the remainder."""
    small = (100 - sum(big)) / 11
    pct = [small] * 11 + big
    return pl.DataFrame(
        {
            "stock_id": stock,
            "week": week,
            "level": [*range(1, 16), 17],
            "holders": [1] * 16,
            "shares": [1] * 16,
            "pct": [*pct, 100.0],
            "published_on": published_on,
        },
        schema_overrides={"level": pl.Int8, "published_on": pl.Date},
    )


def test_big_holder_share_is_point_in_time_by_publication_date():
    w0, w1, w2 = dt.date(2024, 2, 23), dt.date(2024, 3, 1), dt.date(2024, 3, 8)  # Fridays
    holders = pl.concat(
        [
            _holders("H", w0, [9.0, 5.0, 3.0, 2.0], w0 + dt.timedelta(days=1)),
            _holders("H", w1, [10.0, 5.0, 3.0, 2.0], w1 + dt.timedelta(days=1)),
            _holders("H", w2, [11.0, 6.0, 3.0, 2.0], None),  # no publication date: the Saturday after
        ]
    )
    days = [dt.date(2024, 3, 8), dt.date(2024, 3, 11), dt.date(2024, 3, 29), dt.date(2024, 4, 1)]
    quotes = pl.DataFrame({"stock_id": "H", "trade_date": days, "volume": [1000] * 4})
    out = chip.compute(quotes, pl.DataFrame(), pl.DataFrame(), holders).sort("trade_date")
    # Friday 03-08: that week's file appears on Saturday, so the latest published week is 03-01.
    assert out["big_holder_pct"].to_list()[:3] == pytest.approx([20.0, 22.0, 22.0])
    assert out["big_holder_pct_change_1w"].to_list()[:3] == pytest.approx([1.0, 2.0, 2.0])
    # 24 days after the last file: stale, not silently carried forward.
    assert out["big_holder_pct"][3] is None and out["big_holder_pct_change_1w"][3] is None


def test_output_rows_and_schema_follow_the_quotes():
    quotes = pl.concat([_quotes("B", [1000] * 3), _quotes("A", [1000] * 3)])
    out = chip.compute(quotes, _flows("A", [1, 2, 3]), _margin("A", [1, 2, 3]))
    assert out.height == 6
    assert out["stock_id"].to_list() == ["A"] * 3 + ["B"] * 3
    assert all(out.schema[c] == pl.Float64 for c in chip.FACTOR_COLUMNS)
    assert set(out.columns) == {"stock_id", "trade_date", "volume", *chip.FACTOR_COLUMNS}
