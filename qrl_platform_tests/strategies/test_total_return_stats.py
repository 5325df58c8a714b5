"""Stats judge signals on total return and count limit-locked signals as unfilled, by hand.

March 2024 trading days: 4 5 6 7 8 11; horizon 2 trading days, so the 4th exits on the 6th and the 5th
on the 7th.

* DIV: BUY on the 4th at 100; ex-dividend on the 5th (cash 5: prior close 100, reference 95); 96 on
  the 6th. Raw −4 % (a "loss" of the dividend); total return 96 / 95 − 1 = +1.05 %, the price move
  from the reference price → hit.
* RED: BUY on the 4th at 20; halted on the 5th; resumes on the 6th after a 50 % capital reduction
  (reference 40) and closes at 38. Raw +90 % (a "hit" made of the reduction); total 38 / 40 − 1 = −5 %
  → miss.
* LUP: BUY on the 5th at 55 = limit-up of the 4th's 50 → unfilled, whatever the exit says (60).
* LDN: SELL on the 5th at 90 = limit-down of the 4th's 100 → unfilled.
"""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import trading_days
from qrl_platform.market.adjustment import adjust_prices
from qrl_platform.market.tradability import tradability
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.stats import signal_outcomes, update_strategy_stats
from qrl_platform.warehouse.schema import strategies, strategy_executions, strategy_signals


def d(day: int) -> dt.date:
    return dt.date(2024, 3, day)


SIGNALS = [("DIV", 4, "BUY"), ("RED", 4, "BUY"), ("LUP", 5, "BUY"), ("LDN", 5, "SELL")]
CLOSES = {
    "DIV": {4: 100.0, 5: 95.5, 6: 96.0, 7: 96.0},
    "RED": {4: 20.0, 5: None, 6: 38.0, 7: 38.0},
    "LUP": {4: 50.0, 5: 55.0, 6: 58.0, 7: 60.0},
    "LDN": {4: 100.0, 5: 90.0, 6: 85.0, 7: 80.0},
}
ACTIONS = pl.DataFrame(
    {
        "stock_id": ["DIV", "RED"],
        "ex_date": [d(5), d(6)],
        "market": ["TWSE", "TPEx"],
        "kind": ["cash_dividend", "capital_reduction"],
        "prior_close": [100.0, 20.0],
        "reference_price": [95.0, 40.0],
        "cash_per_share": [5.0, None],
        "stock_per_share": [None, None],
        "published_on": [d(1), d(1)],
    },
    schema_overrides={"cash_per_share": pl.Float64, "stock_per_share": pl.Float64},
)


def _signals() -> pl.DataFrame:
    return pl.DataFrame(
        [("STG_TR_001", stock, d(day), signal) for stock, day, signal in SIGNALS],
        schema=["strategy_id", "stock_id", "trade_date", "signal"],
        orient="row",
    )


def _closes() -> pl.DataFrame:
    return pl.DataFrame(
        [(stock, d(day), close) for stock, days in CLOSES.items() for day, close in days.items()],
        schema={"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64},
        orient="row",
    )


def test_signal_outcomes_use_total_return_across_an_ex_dividend_date_and_a_capital_reduction():
    closes = _closes()
    outcomes = signal_outcomes(
        _signals(),
        closes,
        {"STG_TR_001": 2},
        trading_days(d(1), d(15)),
        actions=ACTIONS,
        limits=tradability(closes, ACTIONS),
    )
    rows = {r["stock_id"]: r for r in outcomes.iter_rows(named=True)}
    div, red = rows["DIV"], rows["RED"]
    assert div["exit_date"] == d(6)
    assert div["raw_forward_return"] == pytest.approx(-0.04)
    assert div["forward_return"] == pytest.approx(96 / 95 - 1)
    assert div["hit"] is True and div["unfilled"] is False
    assert red["raw_forward_return"] == pytest.approx(0.9)
    assert red["forward_return"] == pytest.approx(-0.05)
    assert red["hit"] is False
    # Locked at the limit on the trade date: unfilled, not judged, whatever the price did next.
    assert rows["LUP"]["unfilled"] is True and rows["LUP"]["hit"] is None
    assert rows["LUP"]["forward_return"] == pytest.approx(60 / 55 - 1)
    assert rows["LDN"]["unfilled"] is True and rows["LDN"]["hit"] is None


def test_without_corporate_actions_the_total_return_is_the_raw_return():
    outcomes = signal_outcomes(_signals(), _closes(), {"STG_TR_001": 2}, trading_days(d(1), d(15)))
    assert outcomes.get_column("forward_return").to_list() == outcomes.get_column("raw_forward_return").to_list()
    assert not outcomes.get_column("unfilled").any()


def test_an_event_after_the_exit_date_does_not_change_a_judged_signal():
    """As of the exit date: a later event multiplies both closes alike, so the judged return is fixed."""
    later = pl.DataFrame(
        {
            "stock_id": ["DIV"],
            "ex_date": [d(8)],
            "kind": ["cash_dividend"],
            "prior_close": [96.0],
            "reference_price": [90.0],
            "published_on": [d(7)],
        }
    )
    both = pl.concat([ACTIONS.select(later.columns), later])
    closes = _closes()
    first = signal_outcomes(_signals(), closes, {"STG_TR_001": 2}, trading_days(d(1), d(15)), actions=ACTIONS)
    again = signal_outcomes(_signals(), closes, {"STG_TR_001": 2}, trading_days(d(1), d(15)), actions=both)
    assert first.get_column("forward_return").to_list() == again.get_column("forward_return").to_list()


def test_each_entry_is_adjusted_as_adjust_prices_adjusts_it_as_of_the_exit_date():
    """The stats adjust all entries in one pass; `adjust_prices` with as_of = each exit date is the
    definition. Same bits, on the cases where a shortcut would differ: two events on one ex-date, an
    event published after one exit date but before another, an event on or before the entry day, an
    event after the exit, and a stock with no event in between."""
    events = pl.DataFrame(
        [
            ("A", d(6), "cash_dividend", 100.0, 97.3, d(1)),
            ("A", d(6), "stock_dividend", 97.3, 88.45454, d(1)),  # the same ex-date
            ("A", d(11), "cash_dividend", 91.0, 89.7, d(7)),
            ("A", d(12), "cash_dividend", 90.0, 89.1, d(14)),  # published after its ex-date: only later exits
            ("A", d(13), "capital_reduction", 80.0, 133.3, d(12)),
            ("A", d(4), "cash_dividend", 105.0, 100.0, d(1)),  # on the entry day: not in between
            ("B", d(20), "split", 100.0, 25.0, d(1)),  # after every exit
            ("C", d(7), "par_value_change", 30.0, 3.0, d(1)),
        ],
        schema=["stock_id", "ex_date", "kind", "prior_close", "reference_price", "published_on"],
        orient="row",
    )
    signals = pl.DataFrame(
        [("STG_TR_001", stock, d(day), "BUY") for stock in ("A", "B", "C", "N") for day in (4, 5, 6, 7, 8, 11, 12)],
        schema=["strategy_id", "stock_id", "trade_date", "signal"],
        orient="row",
    )
    days = trading_days(d(1), d(29))
    closes = pl.DataFrame(
        [(stock, day, 50.0 + i) for stock in ("A", "B", "C", "N") for i, day in enumerate(days)],
        schema={"stock_id": pl.Utf8, "trade_date": pl.Date, "close": pl.Float64},
        orient="row",
    )
    horizons = {"STG_TR_001": 2}
    outcomes = signal_outcomes(signals, closes, horizons, days, actions=events)

    expected = []
    for row in outcomes.iter_rows(named=True):
        entry = closes.filter((pl.col("stock_id") == row["stock_id"]) & (pl.col("trade_date") == row["trade_date"]))
        adjusted = adjust_prices(entry, events, row["exit_date"])["adj_close"][0]
        exit_close = closes.filter(
            (pl.col("stock_id") == row["stock_id"]) & (pl.col("trade_date") == row["exit_date"])
        )["close"][0]
        expected.append(exit_close / adjusted - 1.0)
    assert outcomes["forward_return"].to_list() == expected  # exact: the same products in the same order
    moved = outcomes.filter(pl.col("forward_return") != pl.col("raw_forward_return"))
    # A's entries before an event known by their exit, and C's entries before the 7th; B and N never.
    assert sorted(set(moved["stock_id"])) == ["A", "C"]
    # The 8th's BUY exits on the 12th, when the event of that ex-date is not yet published; the 11th's
    # BUY exits on the 13th (still unpublished), the 12th's on the 14th (published, but not after the entry).
    late = {r["trade_date"]: r for r in outcomes.filter(pl.col("stock_id") == "A").iter_rows(named=True)}
    assert late[d(8)]["exit_date"] == d(12) and late[d(11)]["exit_date"] == d(13)
    close = {day: 50.0 + i for i, day in enumerate(days)}
    assert late[d(8)]["forward_return"] == close[d(12)] / (close[d(8)] * (89.7 / 91.0)) - 1.0
    assert late[d(11)]["forward_return"] == close[d(13)] / (close[d(11)] * (133.3 / 80.0)) - 1.0


def test_update_strategy_stats_judges_on_total_return_and_counts_unfilled(warehouse, tmp_path):
    frames = FrameStore(str(tmp_path / "frames"))
    closes = _closes()
    for day in sorted(set(closes["trade_date"].to_list())):
        frames.write("daily_quotes", day.isoformat(), closes.filter(pl.col("trade_date") == day))
    for ex_date in ACTIONS.get_column("ex_date").to_list():
        frames.write("corporate_actions", ex_date.isoformat(), ACTIONS.filter(pl.col("ex_date") == ex_date))
    now = dt.datetime(2024, 3, 8, 9, 0, tzinfo=dt.UTC)
    with warehouse.begin() as conn:
        conn.execute(
            strategies.insert().values(
                strategy_id="STG_TR_001",
                name="total return case",
                status="ACTIVE",
                version=1,
                horizon_days=2,
                definition="{}",
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            strategy_executions.insert(),
            [
                {
                    "execution_id": f"E{day}",
                    "strategy_id": "STG_TR_001",
                    "execution_date": d(day),
                    "started_at": dt.datetime(2024, 3, day, 8, 35, tzinfo=dt.UTC),
                    "status": "SUCCESS",
                }
                for day in (4, 5)
            ],
        )
        conn.execute(
            strategy_signals.insert(),
            [
                {
                    "signal_id": f"STG_TR_001-{d(day):%Y%m%d}-{stock}",
                    "strategy_id": "STG_TR_001",
                    "stock_id": stock,
                    "trade_date": d(day),
                    "execution_id": f"E{day}",
                    "signal": signal,
                    "confidence": 0.5,
                    "score": 0.5,
                    "created_at": now,
                }
                for stock, day, signal in SIGNALS
            ],
        )

    result = update_strategy_stats(warehouse, frames, [d(5), d(7)], now=now)
    stored = {
        (r["as_of_date"], r["period_days"]): r
        for r in warehouse.read_table("strategy_stats").iter_rows(named=True)
        if r["strategy_id"] == "STG_TR_001"
    }
    # As of the 7th: DIV hit and RED miss (on raw closes it would be the other way round: DIV −4 %,
    # RED +90 %); LUP and LDN are unfilled, so 1 hit of 2 evaluated and 2 unfilled.
    row = stored[(d(7), 7)]
    assert (row["signal_count"], row["evaluated_signals"], row["hit_rate"], row["unfilled_signals"]) == (4, 2, 0.5, 2)
    # As of the 5th nothing has exited yet, but the two limit-locked signals are known to be unfilled.
    row = stored[(d(5), 7)]
    assert (row["evaluated_signals"], row["hit_rate"], row["unfilled_signals"]) == (0, None, 2)
    judged = result.outcomes.filter(pl.col("hit").is_not_null()).sort("stock_id")
    assert judged.select("stock_id", "hit").rows() == [("DIV", True), ("RED", False)]
    assert (judged.get_column("raw_forward_return") > 0).to_list() == [False, True]
