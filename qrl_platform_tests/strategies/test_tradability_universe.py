"""Strategy universes can leave out stocks that cannot be traded normally that day."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import InvalidStrategy, parse_definition
from qrl_platform.strategies.engine import build_frame, evaluate_strategy
from qrl_platform.strategies.runner import INDICATOR_ASSETS, load_frame

D1 = dt.date(2024, 3, 5)
STOCKS = ["A", "B", "C", "D", "E"]
# A closed at limit-up, B at limit-down, C under disposition, D under full-cash delivery, E normal.
FLAGS = {
    "at_limit_up": [True, False, False, False, False],
    "at_limit_down": [False, True, False, False, False],
    "is_disposition": [False, False, True, False, False],
    "is_full_cash_delivery": [False, False, False, True, False],
}


def _quotes() -> pl.DataFrame:
    n = len(STOCKS)
    return pl.DataFrame(
        {
            "stock_id": STOCKS,
            "trade_date": [D1] * n,
            "market": ["TWSE"] * n,
            "close": [10.0, 20.0, 30.0, 40.0, 50.0],
            "volume": [1_000_000] * n,
            "is_etf": [False] * n,
            "is_suspended": [False] * n,
        }
    )


def _indicators() -> pl.DataFrame:
    return pl.DataFrame({"stock_id": STOCKS, "trade_date": [D1] * 5, "rsi_14": [50.0] * 5})


def _tradability() -> pl.DataFrame:
    return pl.DataFrame({"stock_id": STOCKS, "trade_date": [D1] * 5, **FLAGS})


def _strategy(**universe):
    return parse_definition(
        {
            "strategy_id": "STG_T_001",
            "name": "t",
            "status": "ACTIVE",
            "version": 1,
            "horizon_days": 5,
            "rules": [{"factor": "rsi_14", "op": ">", "value": 0, "weight": 1}],
            "signal": {"buy_above": 1.0},
            "universe": {"min_volume_lots": 0, **universe},
        }
    )


@pytest.mark.parametrize(
    ("universe", "left_out"),
    [
        ({}, set()),  # the default keeps everyone (the stats count limit-locked signals as unfilled)
        ({"exclude_limit_up": True}, {"A"}),
        ({"exclude_limit_down": True}, {"B"}),
        ({"exclude_disposition": True}, {"C"}),
        ({"exclude_full_cash_delivery": True}, {"D"}),
        (
            {
                "exclude_limit_up": True,
                "exclude_limit_down": True,
                "exclude_disposition": True,
                "exclude_full_cash_delivery": True,
            },
            {"A", "B", "C", "D"},
        ),
    ],
)
def test_each_tradability_exclusion_leaves_out_its_stocks(universe, left_out):
    frame = build_frame(_quotes(), [_indicators(), _tradability()])
    result = evaluate_strategy(_strategy(**universe), frame, [D1])
    assert set(result.signals.get_column("stock_id")) == set(STOCKS) - left_out


def test_an_exclusion_without_stored_tradability_is_refused_by_name():
    frame = build_frame(_quotes(), [_indicators()])
    with pytest.raises(ValueError, match=r"STG_T_001: universe excludes on at_limit_up .* 2024-03-05"):
        evaluate_strategy(_strategy(exclude_limit_up=True), frame, [D1])
    # Without an exclusion nothing is needed.
    assert evaluate_strategy(_strategy(), frame, [D1]).signals.height == 5


def test_the_flags_are_validated_and_stored_only_when_on():
    with pytest.raises(InvalidStrategy, match="universe.exclude_disposition"):
        _strategy(exclude_disposition="yes")
    assert "exclude_limit_up" not in _strategy().to_dict()["universe"]  # stored definitions keep their content
    on = _strategy(exclude_limit_up=True)
    assert on.to_dict()["universe"]["exclude_limit_up"] is True
    assert parse_definition(on.to_dict()).universe.exclude_limit_up is True


def test_load_frame_reads_the_stored_tradability(tmp_path):
    store = FrameStore(str(tmp_path))
    store.write("daily_quotes", D1.isoformat(), _quotes())
    for asset in INDICATOR_ASSETS:
        store.write(
            asset,
            D1.isoformat(),
            _indicators() if asset == "technical_indicators" else _quotes().select("stock_id", "trade_date"),
        )
    store.write("tradability", D1.isoformat(), _tradability())
    result = evaluate_strategy(_strategy(exclude_limit_up=True), load_frame(store, [D1]), [D1])
    assert set(result.signals.get_column("stock_id")) == {"B", "C", "D", "E"}
