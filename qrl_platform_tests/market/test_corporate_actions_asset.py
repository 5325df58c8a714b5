"""The corporate_actions asset through Dagster, its blocking plausibility check, and the adjusted readback."""

import datetime as dt

import dagster as dg
import polars as pl
import pytest

import qrl_platform
from qrl_platform.definitions import RESOURCES
from qrl_platform.defs.market.assets import corporate_actions, daily_quotes
from qrl_platform.defs.resources import MarketSourceResource
from qrl_platform.market.corporate_actions import by_partition
from qrl_platform.market.demo import DemoMarket
from qrl_platform.market.schema import CORPORATE_ACTIONS

SUMMER = ("2024-07-01", "2024-09-30")


def _range_tags(start: str, end: str) -> dict:
    return {"dagster/asset_partition_range_start": start, "dagster/asset_partition_range_end": end}


def _check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_a_quarter_materialises_one_partition_per_day_and_the_check_passes(qrl_home):
    result = dg.materialize([corporate_actions], resources=RESOURCES, tags=_range_tags(*SUMMER))
    assert result.success
    stored = qrl_platform.load("corporate_actions", start=SUMMER[0], end=SUMMER[1])
    assert dict(stored.schema) == CORPORATE_ACTIONS and stored.height > 20
    assert stored.filter(pl.col("ex_date") == dt.date(2024, 8, 1)).equals(
        qrl_platform.load("corporate_actions", "2024-08-01")
    )
    meta = result.asset_materializations_for_node("corporate_actions")[0].metadata
    assert meta["dagster/row_count"].value == stored.height
    check = _check(result)
    assert check.passed and check.metadata["events"].value == stored.height
    assert 0.05 < check.metadata["min_factor"].value <= check.metadata["max_factor"].value <= 10


class _ImplausibleSource:
    """The demo market with one dividend whose reference price is four times its prior close."""

    def __init__(self, real):
        self.real, self.name, self.provides = real, real.name, real.provides

    def corporate_actions(self, start, end):
        events = self.real.corporate_actions(start, end)
        return events.with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(pl.col("prior_close") * 4).otherwise(pl.col("reference_price"))
            .alias("reference_price")
        )  # fmt: skip


def test_an_implausible_factor_fails_the_blocking_check_naming_the_event(qrl_home, monkeypatch):
    real_get = MarketSourceResource.get
    monkeypatch.setattr(MarketSourceResource, "get", lambda self: _ImplausibleSource(real_get(self)))
    result = dg.materialize([corporate_actions], resources=RESOURCES, tags=_range_tags(*SUMMER), raise_on_error=False)
    check = _check(result)
    first = (
        qrl_platform.load("corporate_actions", start=SUMMER[0], end=SUMMER[1])
        .sort("ex_date", "stock_id")
        .row(0, named=True)
    )
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert (
        f"stock {first['stock_id']} ex_date {first['ex_date']} kind {first['kind']}" in check.metadata["problem"].value
    )


def test_adjusted_quotes_read_back_point_in_time(qrl_home):
    dg.materialize([daily_quotes, corporate_actions], resources=RESOURCES, tags=_range_tags(*SUMMER))
    events = qrl_platform.load("corporate_actions", start=SUMMER[0], end=SUMMER[1])
    event = events.filter(pl.col("ex_date") > dt.date(2024, 7, 10)).row(0, named=True)
    traded = qrl_platform.load("daily_quotes", start=SUMMER[0], end=SUMMER[1]).filter(
        (pl.col("stock_id") == event["stock_id"]) & (pl.col("trade_date") < event["ex_date"])
    )
    before = traded["trade_date"].max()  # the last trading day before the ex-date
    seen_then = qrl_platform.load("adjusted_quotes", start=SUMMER[0], end=before, as_of=before)
    seen_later = qrl_platform.load("adjusted_quotes", start=SUMMER[0], end=before, as_of=SUMMER[1])
    assert (
        seen_then.height == seen_later.height == qrl_platform.load("daily_quotes", start=SUMMER[0], end=before).height
    )
    assert (seen_then.filter(pl.col("stock_id") == event["stock_id"])["adj_factor"] == 1.0).all()  # not known yet
    later = seen_later.filter((pl.col("stock_id") == event["stock_id"]) & (pl.col("trade_date") == before)).row(
        0, named=True
    )
    after_before = events.filter((pl.col("stock_id") == event["stock_id"]) & (pl.col("ex_date") > before))
    expected = (after_before["reference_price"] / after_before["prior_close"]).product()
    assert later["adj_factor"] == pytest.approx(expected, rel=1e-12) and expected < 1.0
    assert later["adj_close"] == pytest.approx(later["close"] * expected)
    with pytest.raises(ValueError, match="as_of 2024-07-01 is before end"):
        qrl_platform.load("adjusted_quotes", start="2024-07-01", end="2024-07-05", as_of="2024-07-01")
    with pytest.raises(KeyError, match="corporate_actions not stored"):
        qrl_platform.load("adjusted_quotes", start="2024-07-01", end="2024-07-05", as_of="2024-10-31")


def test_an_ex_date_on_a_closed_day_moves_to_the_next_trading_day():
    events = DemoMarket(seed=7, universe_size=60).corporate_actions(dt.date(2024, 7, 1), dt.date(2024, 12, 31))
    typhoon = events.head(1).with_columns(pl.lit(dt.date(2024, 10, 31)).alias("ex_date"))  # Typhoon Kong-rey
    parts = by_partition(typhoon, [dt.date(2024, 10, 31), dt.date(2024, 11, 1)])
    assert parts[dt.date(2024, 10, 31)].is_empty()
    assert parts[dt.date(2024, 11, 1)]["ex_date"].to_list() == [dt.date(2024, 11, 1)]
