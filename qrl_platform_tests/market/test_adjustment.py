"""Point-in-time backward adjustment on hand-built events (market/adjustment.py)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from qrl_platform.market import schema
from qrl_platform.market.adjustment import adjust_prices, adjustment_factors
from qrl_platform.market.schema import BadMarketData

D = dt.date


def actions(*events: dict) -> pl.DataFrame:
    rows = [
        {
            "stock_id": "2330",
            "market": "TWSE",
            "cash_per_share": None,
            "stock_per_share": None,
            "published_on": event["ex_date"] - dt.timedelta(days=20),
            **event,
        }
        for event in events
    ]
    return schema.conform("corporate_actions", pl.DataFrame(rows, schema_overrides=schema.CORPORATE_ACTIONS))


def quotes(stock_id: str, closes: dict[dt.date, float]) -> pl.DataFrame:
    return pl.DataFrame(
        {"stock_id": [stock_id] * len(closes), "trade_date": list(closes), "close": list(closes.values())},
        schema={"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64},
    )


def factors_by_date(adjusted: pl.DataFrame) -> dict[dt.date, float]:
    return dict(zip(adjusted["trade_date"].to_list(), adjusted["adj_factor"].to_list(), strict=True))


CASH = {
    "ex_date": D(2024, 7, 10),
    "kind": "cash_dividend",
    "prior_close": 100.0,
    "reference_price": 96.0,
    "cash_per_share": 4.0,
}


def test_cash_dividend_scales_days_before_the_ex_date_only():
    days = {D(2024, 7, 8): 99.0, D(2024, 7, 9): 100.0, D(2024, 7, 10): 97.0, D(2024, 7, 11): 98.0}
    adjusted = adjust_prices(quotes("2330", days), actions(CASH), as_of=D(2024, 7, 31))
    assert factors_by_date(adjusted) == {
        D(2024, 7, 8): pytest.approx(0.96),
        D(2024, 7, 9): pytest.approx(0.96),
        D(2024, 7, 10): 1.0,
        D(2024, 7, 11): 1.0,
    }
    assert adjusted["adj_close"].to_list() == pytest.approx([95.04, 96.0, 97.0, 98.0])
    # Total return across the ex-date with the dividend reinvested: 97 / 96 - 1, not 97 / 100 - 1.
    assert adjusted["adj_close"][2] / adjusted["adj_close"][1] - 1 == pytest.approx(97 / 96 - 1)


def test_stock_dividend_and_combined_event():
    stock = {
        "ex_date": D(2024, 8, 1),
        "kind": "stock_dividend",
        "prior_close": 55.0,
        "reference_price": 50.0,
        "stock_per_share": 0.1,
    }
    both = {
        "ex_date": D(2024, 8, 1),
        "kind": "cash_and_stock",
        "prior_close": 55.0,
        "reference_price": 48.18,
        "cash_per_share": 2.0,
        "stock_per_share": 0.1,
    }
    days = {D(2024, 7, 31): 55.0, D(2024, 8, 1): 50.5}
    for event, factor in ((stock, 50.0 / 55.0), (both, 48.18 / 55.0)):
        adjusted = adjust_prices(quotes("2330", days), actions(event), as_of=D(2024, 8, 30))
        assert factors_by_date(adjusted) == {D(2024, 7, 31): pytest.approx(factor), D(2024, 8, 1): 1.0}


def test_capital_reduction_raises_earlier_prices():
    reduction = {"ex_date": D(2024, 9, 2), "kind": "capital_reduction", "prior_close": 8.0, "reference_price": 20.0}
    days = {D(2024, 8, 20): 8.0, D(2024, 9, 2): 21.0}
    adjusted = adjust_prices(quotes("2330", days), actions(reduction), as_of=D(2024, 9, 30))
    assert factors_by_date(adjusted)[D(2024, 8, 20)] == pytest.approx(2.5)
    assert adjusted["adj_close"].to_list() == pytest.approx([20.0, 21.0])


def test_two_events_compound_and_each_day_takes_the_events_after_it():
    second = {
        "ex_date": D(2024, 10, 15),
        "kind": "cash_dividend",
        "prior_close": 110.0,
        "reference_price": 105.0,
        "cash_per_share": 5.0,
    }
    days = {D(2024, 7, 1): 100.0, D(2024, 8, 1): 105.0, D(2024, 11, 1): 106.0}
    adjusted = adjust_prices(quotes("2330", days), actions(CASH, second), as_of=D(2024, 12, 31))
    assert factors_by_date(adjusted) == {
        D(2024, 7, 1): pytest.approx(0.96 * 105 / 110),
        D(2024, 8, 1): pytest.approx(105 / 110),
        D(2024, 11, 1): 1.0,
    }


def test_point_in_time_event_published_after_as_of_is_not_applied():
    days = {D(2024, 7, 9): 100.0, D(2024, 7, 10): 97.0}
    late = {**CASH, "published_on": D(2024, 7, 20)}  # a correction made public after the ex-date
    before = adjust_prices(quotes("2330", days), actions(late), as_of=D(2024, 7, 15))
    after = adjust_prices(quotes("2330", days), actions(late), as_of=D(2024, 7, 20))
    assert before["adj_factor"].to_list() == [1.0, 1.0]
    assert after["adj_factor"].to_list() == pytest.approx([0.96, 1.0])
    # An announced event whose ex-date is still ahead of as_of does not apply either.
    ahead = adjust_prices(quotes("2330", days), actions(CASH), as_of=D(2024, 7, 9))
    assert ahead["adj_factor"].to_list() == [1.0, 1.0]
    assert adjustment_factors(actions(CASH), D(2024, 7, 9)).height == 0
    assert adjustment_factors(actions(CASH), D(2024, 7, 10))["factor"].to_list() == pytest.approx([0.96])


def test_ex_date_on_a_non_trading_day_applies_to_the_days_before_it():
    saturday = {**CASH, "ex_date": D(2024, 7, 13)}
    days = {D(2024, 7, 12): 100.0, D(2024, 7, 15): 97.0}  # Friday, Monday
    adjusted = adjust_prices(quotes("2330", days), actions(saturday), as_of=D(2024, 7, 31))
    assert factors_by_date(adjusted) == {D(2024, 7, 12): pytest.approx(0.96), D(2024, 7, 15): 1.0}


def test_other_stocks_and_all_price_columns():
    frame = pl.DataFrame(
        {
            "stock_id": ["2330", "1101"],
            "trade_date": [D(2024, 7, 9)] * 2,
            "open": [99.0, 30.0],
            "high": [101.0, 31.0],
            "low": [98.0, 29.0],
            "close": [100.0, 30.5],
        },
    )
    adjusted = adjust_prices(frame, actions(CASH), as_of=D(2024, 7, 31))
    assert adjusted.columns == [*frame.columns, "adj_factor", "adj_open", "adj_high", "adj_low", "adj_close"]
    assert adjusted.row(0, named=True)["adj_high"] == pytest.approx(101.0 * 0.96)
    assert adjusted.row(1, named=True)["adj_factor"] == 1.0
    assert adjusted.row(1, named=True)["adj_low"] == 29.0


@pytest.mark.parametrize(
    ("kind", "prior_close", "reference_price"),
    [
        ("cash_dividend", 100.0, 160.0),
        ("cash_dividend", 100.0, 4.0),
        ("capital_reduction", 5.0, 60.0),
        ("par_value_change", 100.0, 0.5),
    ],
)
def test_implausible_factor_is_rejected_naming_the_event(kind, prior_close, reference_price):
    event = {"ex_date": D(2024, 7, 10), "kind": kind, "prior_close": prior_close, "reference_price": reference_price}
    with pytest.raises(BadMarketData, match=rf"stock 2330 ex_date 2024-07-10 kind {kind}"):
        adjust_prices(quotes("2330", {D(2024, 7, 9): 100.0}), actions(event), as_of=D(2024, 7, 31))


def test_a_20_for_1_par_value_change_is_plausible_though_a_dividend_of_that_size_is_not():
    # TPEx 5314, 2025-03-31: par value NT$10 → NT$0.5, reference price = prior close / 20.
    par_change = {"ex_date": D(2025, 3, 31), "kind": "par_value_change", "prior_close": 300.0, "reference_price": 15.0}
    adjusted = adjust_prices(quotes("2330", {D(2025, 3, 28): 300.0}), actions(par_change), as_of=D(2025, 4, 1))
    assert adjusted["adj_close"].to_list() == [pytest.approx(15.0)]
    with pytest.raises(BadMarketData, match="kind cash_dividend"):
        adjustment_factors(actions({**par_change, "kind": "cash_dividend"}), D(2025, 4, 1))


def test_implausible_event_not_yet_known_does_not_block():
    event = {"ex_date": D(2024, 7, 10), "kind": "cash_dividend", "prior_close": 100.0, "reference_price": 300.0}
    assert adjustment_factors(actions(event), D(2024, 7, 9)).height == 0


def test_no_actions_gives_unit_factors():
    adjusted = adjust_prices(quotes("2330", {D(2024, 7, 9): 100.0}), schema.empty("corporate_actions"), D(2024, 7, 31))
    assert adjusted["adj_factor"].to_list() == [1.0]
    assert adjusted["adj_close"].to_list() == [100.0]


def test_schema_rejects_an_unknown_kind():
    with pytest.raises(BadMarketData, match="field 'kind' is 'bonus'"):
        actions({**CASH, "kind": "bonus"})
