import datetime as dt
import io

import polars as pl
import pytest

from qrl_platform.market.demo import DEMO_LABEL, DemoMarket, statutory_deadline
from qrl_platform.market.schema import RAW_TABLES
from qrl_platform.market.sources import DAILY_TABLES

DAY = dt.date(2024, 3, 5)


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def market() -> DemoMarket:
    return DemoMarket(seed=7, universe_size=300)


def test_same_seed_and_date_give_identical_bytes_whatever_came_before(market):
    fresh = DemoMarket(seed=7, universe_size=300)
    for other_day in (dt.date(2024, 6, 3), dt.date(2023, 1, 5)):
        for table in DAILY_TABLES:
            market.fetch_day(table, other_day)
    for table in DAILY_TABLES:
        assert _parquet_bytes(fresh.fetch_day(table, DAY).frame) == _parquet_bytes(market.fetch_day(table, DAY).frame)
    assert _parquet_bytes(fresh.monthly_revenue(dt.date(2024, 2, 1))) == _parquet_bytes(
        market.monthly_revenue(dt.date(2024, 2, 1))
    )


def test_another_seed_gives_another_market(market):
    other = DemoMarket(seed=8, universe_size=300)
    assert not other.fetch_day("daily_quotes", DAY).frame.equals(market.fetch_day("daily_quotes", DAY).frame)


def test_default_universe_is_1800_stocks_on_both_markets():
    quotes = DemoMarket().fetch_day("daily_quotes", DAY).frame
    assert 1700 <= quotes.height <= 1800  # a few stocks list later in the grid
    counts = dict(quotes.group_by("market").len().iter_rows())
    assert counts["TWSE"] > 800 and counts["TPEx"] > 700


def test_daily_tables_follow_the_canonical_schema_and_are_plausible(market):
    for table in DAILY_TABLES:
        result = market.fetch_day(table, DAY)
        assert dict(result.frame.schema) == RAW_TABLES[table]
        assert result.details["label"] == DEMO_LABEL
    quotes = market.fetch_day("daily_quotes", DAY).frame
    traded = quotes.filter(~pl.col("is_suspended"))
    assert traded.select((pl.col("high") >= pl.col("low")).all()).item()
    assert traded.select((pl.col("close") > 0).all()).item()
    assert quotes.filter(pl.col("is_etf")).height > 0
    assert quotes["stock_id"].n_unique() == quotes.height


def test_suspended_stocks_have_null_prices_not_zero(market):
    days = [dt.date(2024, 3, d) for d in range(4, 9)] + [
        dt.date(2024, 4, d) for d in range(1, 13) if dt.date(2024, 4, d).weekday() < 5
    ]
    suspended = pl.concat([market.fetch_day("daily_quotes", d).frame for d in days if d != dt.date(2024, 4, 4)]).filter(
        pl.col("is_suspended")
    )
    assert suspended.height > 0
    assert suspended["close"].null_count() == suspended.height
    assert (suspended["volume"] == 0).all()


def test_closed_day_is_empty_with_reason(market):
    result = market.fetch_day("daily_quotes", dt.date(2024, 10, 31))
    assert result.closed and result.frame.height == 0 and "Typhoon" in result.reason


def test_flows_correlate_with_returns(market):
    quotes = market.fetch_day("daily_quotes", DAY).frame
    flows = market.fetch_day("institutional_flows", DAY).frame
    joined = quotes.join(flows, on=["stock_id", "trade_date"]).filter(~pl.col("is_suspended"))
    corr = joined.select(pl.corr(pl.col("change") / pl.col("close"), pl.col("foreign_net") / pl.col("volume"))).item()
    assert corr > 0.2


def test_publication_lags_are_point_in_time_realistic(market):
    revenue = market.monthly_revenue(dt.date(2024, 3, 1))
    assert revenue["published_on"].min() >= dt.date(2024, 4, 1)
    assert revenue["published_on"].max() <= dt.date(2024, 4, 10)
    q3 = market.financials(dt.date(2024, 7, 1))
    assert q3["published_on"].max() <= statutory_deadline(2024, 3) == dt.date(2024, 11, 14)
    q4 = market.financials(dt.date(2024, 10, 1))
    assert q4["published_on"].max() <= dt.date(2025, 3, 31)


def test_shareholding_levels_sum_to_the_total(market):
    dist = market.shareholding_distribution(dt.date(2024, 3, 8))
    bands = dist.filter(pl.col("level") <= 15).group_by("stock_id").agg(pl.col("pct").sum(), pl.col("shares").sum())
    totals = dist.filter(pl.col("level") == 17).select("stock_id", pl.col("shares").alias("total"))
    joined = bands.join(totals, on="stock_id")
    assert (joined["pct"] - 100).abs().max() < 0.01
    assert (joined["shares"] == joined["total"]).all()


def test_dates_outside_the_demo_range_are_rejected_clearly(market):
    with pytest.raises(ValueError, match="2031-01-06 is outside the demo range"):
        market.fetch_day("daily_quotes", dt.date(2031, 1, 6))
