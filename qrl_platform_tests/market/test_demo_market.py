import datetime as dt
import hashlib
import io

import numpy as np
import polars as pl
import pytest

from qrl_platform.market.demo import _CHUNK, DEMO_LABEL, DemoMarket, _ChunkedDraw, statutory_deadline
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


# Digests of the demo market's output (seed 7, 40 stocks) recorded from the whole-grid generation that
# the chunked one replaced: the same seed must keep giving the same bytes (CSV of each frame).
RECORDED_DIGESTS = {
    ("daily_quotes", "2018-01-02"): "a9821e97e5e94980",
    ("daily_quotes", "2020-03-31"): "056a3a1a5d5c6211",
    ("daily_quotes", "2024-12-31"): "d2518d537a334335",
    ("daily_quotes", "2028-12-29"): "032f1ad5cd7574ad",
    ("institutional_flows", "2018-01-02"): "c1c0e2e5a6aedc06",
    ("institutional_flows", "2020-03-31"): "ba5ce075e8027b41",
    ("institutional_flows", "2024-12-31"): "6538ec93f605ef3a",
    ("institutional_flows", "2028-12-29"): "d5ee1a7b12991286",
    ("margin_balances", "2018-01-02"): "7b7690edb426836a",
    ("margin_balances", "2020-03-31"): "7bdfb915d8653fec",
    ("margin_balances", "2024-12-31"): "1aa5dc0c322c6700",
    ("margin_balances", "2028-12-29"): "ca986b460a7629e6",
    ("valuations", "2018-01-02"): "4757d463c396deee",
    ("valuations", "2020-03-31"): "62dae0ef2fb392a9",
    ("valuations", "2024-12-31"): "62d2971aa465733e",
    ("valuations", "2028-12-29"): "577f16be9e18ac3b",
    ("corporate_actions", "all"): "b5d1f2c1b594c43e",
    ("shareholding_distribution", "2024-12-27"): "a8e27cec69f2b8c4",
    ("financials", "2024-07-01"): "4280473368213cd0",
}


def _csv_digest(frame: pl.DataFrame) -> str:
    return hashlib.sha256(frame.write_csv().encode()).hexdigest()[:16]


def test_output_is_pinned_for_a_seed_on_days_across_the_grid():
    market = DemoMarket(seed=7, universe_size=40)
    digests = {}
    # Later days first, then earlier ones: a day's values must not depend on the order of the requests.
    for day in ("2028-12-29", "2024-12-31", "2018-01-02", "2020-03-31"):
        for table in DAILY_TABLES:
            digests[table, day] = _csv_digest(market.fetch_day(table, dt.date.fromisoformat(day)).frame)
    digests["corporate_actions", "all"] = _csv_digest(
        market.corporate_actions(dt.date(2018, 1, 1), dt.date(2028, 12, 29))
    )
    digests["shareholding_distribution", "2024-12-27"] = _csv_digest(
        market.shareholding_distribution(dt.date(2024, 12, 27))
    )
    digests["financials", "2024-07-01"] = _csv_digest(market.financials(dt.date(2024, 7, 1)))
    assert digests == RECORDED_DIGESTS


@pytest.mark.parametrize(
    "draw",
    [
        lambda r, shape: r.standard_normal(shape),
        lambda r, shape: r.normal(0, 0.02, shape),
        lambda r, shape: r.uniform(0.05, 0.3, shape),
        lambda r, shape: r.random(shape),
        lambda r, shape: r.poisson(3, shape),
    ],
    ids=["standard_normal", "normal", "uniform", "random", "poisson"],
)
def test_a_chunk_of_a_draw_equals_those_rows_of_the_whole_draw(draw):
    n_days, stocks = 3 * _CHUNK + 5, 7
    whole = draw(np.random.default_rng(11), (n_days, stocks))
    rng = np.random.default_rng(11)
    chunked = _ChunkedDraw(rng, n_days, stocks, draw)
    after = draw(rng, (1, stocks))  # the generator continues where the whole draw would have left it
    assert np.array_equal(after, draw(_continued(11, draw, n_days, stocks), (1, stocks)))
    for k in (3, 0, 2, 1):
        rows = min(_CHUNK, n_days - k * _CHUNK)
        assert np.array_equal(chunked.chunk(k, rows), whole[k * _CHUNK : k * _CHUNK + rows])


def _continued(seed, draw, n_days, stocks) -> np.random.Generator:
    rng = np.random.default_rng(seed)
    draw(rng, (n_days, stocks))
    return rng
