"""The demo market's corporate actions: a realistic calendar, prices that continue from the reference
price, and the same bytes for the same seed."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl
import pytest

from qrl_platform.market.adjustment import adjust_prices
from qrl_platform.market.demo import DemoMarket, tick_round

YEAR = (dt.date(2024, 1, 1), dt.date(2024, 12, 31))


@pytest.fixture(scope="module")
def market() -> DemoMarket:
    return DemoMarket(seed=7, universe_size=300)


@pytest.fixture(scope="module")
def year(market) -> pl.DataFrame:
    return market.corporate_actions(*YEAR)


def _bytes(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    return buffer.getvalue()


def test_same_seed_same_bytes_another_seed_other_events(market, year):
    assert _bytes(DemoMarket(seed=7, universe_size=300).corporate_actions(*YEAR)) == _bytes(year)
    assert _bytes(market.corporate_actions(dt.date(2024, 7, 1), dt.date(2024, 7, 31))) == _bytes(
        year.filter(pl.col("ex_date").dt.month() == 7)
    )
    assert not DemoMarket(seed=8, universe_size=300).corporate_actions(*YEAR).equals(year)


def test_annual_and_quarterly_payers_with_ex_dates_mostly_june_to_september(year):
    dividends = year.filter(pl.col("kind") != "capital_reduction")
    per_stock = dividends.group_by("stock_id").len()
    assert set(per_stock["len"].unique()) >= {1, 4}  # annual payers and quarterly payers
    assert per_stock.filter(pl.col("len") == 1).height > 5 * per_stock.filter(pl.col("len") == 4).height
    summer = dividends.filter(pl.col("ex_date").dt.month().is_between(6, 9)).height
    assert summer / dividends.height > 0.6
    yields = dividends.filter(pl.col("cash_per_share").is_not_null()).select(
        pl.col("cash_per_share") / pl.col("prior_close")
    )
    assert yields.to_series().max() <= 0.081 and yields.to_series().min() > 0.001
    assert set(year["kind"]) >= {"cash_dividend", "cash_and_stock"}


def test_capital_reductions_exist_and_lift_the_price(market):
    everything = market.corporate_actions(dt.date(2018, 1, 1), dt.date(2028, 12, 29))
    reductions = everything.filter(pl.col("kind") == "capital_reduction")
    assert reductions.height >= 1
    assert (reductions["reference_price"] > reductions["prior_close"]).all()
    assert set(everything["kind"]) >= {"cash_dividend", "stock_dividend", "cash_and_stock", "capital_reduction"}


def test_the_price_path_continues_from_the_reference_price(market, year):
    for event in year.head(20).iter_rows(named=True):
        before = market.fetch_day("daily_quotes", event["published_on"]).frame
        on = market.fetch_day("daily_quotes", event["ex_date"]).frame
        prior = before.filter(pl.col("stock_id") == event["stock_id"]).row(0, named=True)
        today = on.filter(pl.col("stock_id") == event["stock_id"]).row(0, named=True)
        assert prior["close"] == event["prior_close"]
        expected = (event["prior_close"] - (event["cash_per_share"] or 0)) / (1 + (event["stock_per_share"] or 0))
        assert event["reference_price"] == tick_round(pl.Series([expected]).to_numpy())[0]
        # change is reported against the reference price on the ex-date, and the ±10 % limit holds around it
        assert today["change"] == pytest.approx(today["close"] - event["reference_price"], abs=1e-9)
        assert today["high"] <= event["reference_price"] * 1.1 + 0.01


def test_adjusted_closes_remove_the_dividend_gap(market, year):
    event = year.filter(pl.col("kind") == "cash_dividend").row(0, named=True)
    days = [event["published_on"], event["ex_date"]]
    quotes = pl.concat([market.fetch_day("daily_quotes", d).frame for d in days]).filter(
        pl.col("stock_id") == event["stock_id"]
    )
    adjusted = adjust_prices(quotes, year, as_of=dt.date(2024, 12, 31))
    raw_return = quotes["close"][1] / quotes["close"][0] - 1
    total_return = adjusted["adj_close"][1] / adjusted["adj_close"][0] - 1
    assert total_return == pytest.approx(quotes["close"][1] / event["reference_price"] - 1)
    assert total_return > raw_return


def test_dividend_yield_is_the_last_years_cash_over_the_close(market, year):
    event = year.filter(pl.col("kind") == "cash_dividend").row(0, named=True)
    valuations = market.fetch_day("valuations", event["ex_date"]).frame.filter(pl.col("stock_id") == event["stock_id"])
    close = market.fetch_day("daily_quotes", event["ex_date"]).frame.filter(pl.col("stock_id") == event["stock_id"])
    assert valuations["dividend_yield"][0] >= round(event["cash_per_share"] / close["close"][0] * 100, 2) - 0.01
