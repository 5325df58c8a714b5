"""Technical factors on adjusted prices: an ex-dividend date is not a price move.

One stock trades flat at 100 until its ex-dividend date E (cash dividend 10: reference price 90) and
flat at 90 from E on. On raw prices E shows a −10 % day; on prices adjusted as of the day every bar
before E is 90, so returns are 0 and moving averages flat.
"""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import trading_days
from qrl_platform.factors import compute_range as ranges
from qrl_platform.factors import registry
from qrl_platform.storage.frames import FrameStore

EX_DATE = dt.date(2024, 4, 15)
DAYS = trading_days(dt.date(2024, 1, 2), dt.date(2024, 4, 19))
ACTION = pl.DataFrame(
    {
        "stock_id": ["DIV"],
        "ex_date": [EX_DATE],
        "market": ["TWSE"],
        "kind": ["cash_dividend"],
        "prior_close": [100.0],
        "reference_price": [90.0],
        "cash_per_share": [10.0],
        "stock_per_share": [None],
        "published_on": [dt.date(2024, 3, 20)],
    },
    schema_overrides={"stock_per_share": pl.Float64},
)


def _store(tmp_path, *, with_action: bool) -> FrameStore:
    store = FrameStore(str(tmp_path / ("adjusted" if with_action else "raw")))
    for day in DAYS:
        price = 100.0 if day < EX_DATE else 90.0
        store.write(
            "daily_quotes",
            day.isoformat(),
            pl.DataFrame(
                {
                    "stock_id": ["DIV"],
                    "trade_date": [day],
                    "open": [price],
                    "high": [price],
                    "low": [price],
                    "close": [price],
                    "volume": [1_000_000],
                    "is_suspended": [False],
                }
            ),
        )
    if with_action:
        store.write("corporate_actions", EX_DATE.isoformat(), ACTION)
    return store


def _row(result: ranges.RangeResult, day: dt.date) -> dict:
    return result.frames[day].row(0, named=True)


def test_returns_and_averages_have_no_jump_across_an_ex_dividend_date(tmp_path):
    store = _store(tmp_path, with_action=True)
    ex = _row(ranges.compute_range(store, "technical_indicators", [EX_DATE]), EX_DATE)
    for factor in ("ret_1", "ret_5", "ret_20", "ret_60"):
        assert ex[factor] == pytest.approx(0.0, abs=1e-12), factor
    # Price levels are on the day's own basis (the close strategies compare them with): 90, not 98.
    assert ex["sma_5"] == pytest.approx(90.0) and ex["sma_20"] == pytest.approx(90.0)
    assert ex["bb_upper"] == pytest.approx(90.0) and ex["ema_12"] == pytest.approx(90.0)
    assert ex["macd"] == pytest.approx(0.0, abs=1e-9) and ex["atr_14"] == pytest.approx(0.0, abs=1e-9)

    # The same stock without the corporate action stored: the raw −10 % "return" the issue describes.
    raw = _row(ranges.compute_range(_store(tmp_path, with_action=False), "technical_indicators", [EX_DATE]), EX_DATE)
    assert raw["ret_1"] == pytest.approx(-0.1) and raw["sma_5"] == pytest.approx(98.0)


def test_a_range_run_stores_what_each_day_alone_stores(tmp_path):
    """Point in time: the day before the ex-date, run inside a range that reaches past it, keeps its own
    basis (100), exactly as a run of that day alone."""
    store = _store(tmp_path, with_action=True)
    days = [d for d in DAYS if d >= dt.date(2024, 4, 10)]
    together = ranges.compute_range(store, "technical_indicators", days)
    for day in days:
        alone = ranges.compute_range(store, "technical_indicators", [day])
        for factor, value in _row(alone, day).items():
            other = _row(together, day)[factor]
            assert other == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), (day, factor)
    assert _row(together, dt.date(2024, 4, 12))["sma_5"] == pytest.approx(100.0)


def test_factor_metadata_declares_each_factors_price_basis():
    rows = {r["factor_id"]: r["price_basis"] for r in registry.factor_metadata_rows()}
    assert {rows[f] for f in ("ret_1", "ret_60", "dist_52w_high", "sma_20", "rsi_14", "obv")} == {"adjusted"}
    assert {rows[f] for f in ("pe", "pb", "dividend_yield")} == {"raw"}
    assert rows["vol_ratio_5"] == "none" and rows["foreign_net_pct_5"] == "none" and rows["roe_ttm"] == "none"
    assert set(rows.values()) <= {"raw", "adjusted", "none"}
