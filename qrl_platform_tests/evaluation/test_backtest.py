"""Strategy backtest: hand-computed Taiwan cost cases, fills at the limits, and empyrical as the oracle
for the return figures."""

from __future__ import annotations

import datetime as dt

import empyrical
import numpy as np
import polars as pl
import pytest

from qrl_platform.evaluation.backtest import Book, Quote, books_from_frames, orders_by_day, simulate
from qrl_platform.evaluation.inputs import SIGNAL_SCHEMA
from qrl_platform.evaluation.metrics import performance, return_figures
from qrl_platform.evaluation.rules import BacktestRule, commission, parse_backtest_rule, transaction_tax

DAYS = [dt.date(2024, 3, d) for d in (4, 5, 6, 7, 8, 11)]


def quote(open_, close=None, *, up=None, down=None, suspended=False, etf=False, fcd=False):
    return Quote(open_, close if close is not None else open_, up, down, suspended, fcd, etf)


def signals(*rows):
    return pl.DataFrame(
        [(s, stock, day, sig, 1.0, 1.0) for s, stock, day, sig in rows],
        schema=SIGNAL_SCHEMA,
        orient="row",
    )


def run(rule, market, signal_rows, days=DAYS, horizon=2):
    books = {"STG_A": Book.fresh("STG_A", rule, horizon)}
    result = simulate(books, days[1:], market, orders_by_day(signals(*signal_rows), days))
    return books["STG_A"], result


def test_commission_has_a_nt20_minimum_and_tax_is_only_on_sells():
    assert commission(1_000) == 20  # 1.425 → the NT$20 minimum
    assert commission(50_000) == 71  # 71.25 rounded down
    assert commission(50_000, broker_discount=0.6) == 42  # 42.75
    assert transaction_tax(55_000, is_etf=False) == 165  # 0.3 %
    assert transaction_tax(100_000, is_etf=True) == 100  # 0.1 % for ETFs


def test_odd_lot_purchase_pays_the_nt20_minimum():
    rule = BacktestRule(capital_twd=1_000.0 + 20, max_positions=1, odd_lots=True)
    market = {DAYS[1]: {"2330": quote(100.0)}}
    book, result = run(rule, market, [("STG_A", "2330", DAYS[0], "BUY")], days=DAYS[:2])
    trade = result.trades.row(0, named=True)
    assert (trade["side"], trade["status"], trade["shares"], trade["value"]) == ("BUY", "FILLED", 10.0, 1_000.0)
    assert trade["commission"] == 20.0 and trade["tax"] == 0.0
    assert book.cash == 0.0


def test_round_trip_costs_tax_only_on_the_sell_and_exit_after_hold_days():
    rule = BacktestRule(capital_twd=100_000.0, max_positions=1)
    market = {
        DAYS[1]: {"2330": quote(50.0, 52.0)},
        DAYS[2]: {"2330": quote(53.0, 54.0)},
        DAYS[3]: {"2330": quote(55.0, 56.0)},
    }
    book, result = run(rule, market, [("STG_A", "2330", DAYS[0], "BUY")], days=DAYS[:4])
    buy, sell = result.trades.sort("trade_date").rows(named=True)
    # 100,000 buys one lot of 1,000 at 50 (two lots cost 100,142.5 with commission).
    assert (buy["shares"], buy["value"], buy["commission"], buy["tax"]) == (1000.0, 50_000.0, 71.0, 0.0)
    assert (sell["trade_date"], sell["reason"], sell["value"]) == (DAYS[3], "hold_days", 55_000.0)
    assert (sell["commission"], sell["tax"]) == (78.0, 165.0)
    assert sell["pnl"] == pytest.approx(55_000 - 78 - 165 - 50_071)
    assert book.cash == pytest.approx(100_000 - 50_071 + 55_000 - 78 - 165)
    nav = result.nav.sort("trade_date")
    assert nav["nav"].to_list() == pytest.approx([49_929 + 52_000, 49_929 + 54_000, book.cash])
    assert nav["costs"].to_list() == [71.0, 0.0, 243.0]
    assert nav["turnover"][0] == pytest.approx(50_000 / 2 / 100_000)
    assert nav["closed_trades"].sum() == 1 and nav["winning_trades"].sum() == 1


def test_etf_sell_pays_the_etf_tax_rate():
    rule = BacktestRule(capital_twd=200_000.0, max_positions=1)
    market = {
        DAYS[1]: {"0050": quote(100.0, etf=True)},
        DAYS[2]: {"0050": quote(100.0, etf=True)},
    }
    _, result = run(
        rule, market, [("STG_A", "0050", DAYS[0], "BUY"), ("STG_A", "0050", DAYS[1], "SELL")], days=DAYS[:3]
    )
    sell = result.trades.filter(pl.col("side") == "SELL").row(0, named=True)
    assert (sell["reason"], sell["value"], sell["tax"]) == ("sell_signal", 100_000.0, 100.0)


def test_a_limit_up_buy_is_not_filled_and_the_next_candidate_is_tried():
    rule = BacktestRule(capital_twd=100_000.0, max_positions=1)
    market = {DAYS[1]: {"2330": quote(55.0, up=55.0), "2317": quote(20.0)}}
    rows = [("STG_A", "2330", DAYS[0], "BUY"), ("STG_A", "2317", DAYS[0], "BUY")]
    books = {"STG_A": Book.fresh("STG_A", rule, 5)}
    ordered = orders_by_day(signals(*rows).with_columns(pl.Series("confidence", [0.9, 0.8])), DAYS[:2])
    result = simulate(books, DAYS[1:2], market, ordered)
    unfilled, filled = result.trades.rows(named=True)
    assert (unfilled["stock_id"], unfilled["status"], unfilled["reason"]) == ("2330", "UNFILLED", "limit_up")
    assert (filled["stock_id"], filled["status"], filled["shares"]) == ("2317", "FILLED", 4000.0)
    nav = result.nav.row(0, named=True)
    assert (nav["buy_orders"], nav["buy_unfilled"]) == (2, 1)
    assert performance(result.nav)["unfilled_share"][0] == 0.5


def test_a_limit_down_sell_waits_for_the_next_open():
    rule = BacktestRule(capital_twd=100_000.0, max_positions=1)
    market = {
        DAYS[1]: {"2330": quote(50.0)},
        DAYS[2]: {"2330": quote(45.0, down=45.0)},
        DAYS[3]: {"2330": quote(44.0)},
    }
    rows = [("STG_A", "2330", DAYS[0], "BUY"), ("STG_A", "2330", DAYS[1], "SELL")]
    book, result = run(rule, market, rows, days=DAYS[:4], horizon=10)
    sells = result.trades.filter(pl.col("side") == "SELL").sort("trade_date")
    assert sells.select("trade_date", "status", "reason").rows() == [
        (DAYS[2], "UNFILLED", "limit_down"),
        (DAYS[3], "FILLED", "retry"),
    ]
    assert not book.holdings


def test_a_dividend_keeps_the_position_value_across_the_ex_date():
    rule = BacktestRule(capital_twd=100_000.0, max_positions=1)
    market = {DAYS[1]: {"2330": quote(50.0)}, DAYS[2]: {"2330": quote(48.0, 48.0)}}
    events = {DAYS[2]: {"2330": 48.0 / 50.0}}  # NT$2 cash dividend, reference price 48
    books = {"STG_A": Book.fresh("STG_A", rule, 10)}
    result = simulate(books, DAYS[1:3], market, orders_by_day(signals(("STG_A", "2330", DAYS[0], "BUY")), DAYS), events)
    assert result.nav["nav"][1] == pytest.approx(result.nav["nav"][0])


def test_a_day_by_day_run_from_stored_books_equals_the_range_run():
    rng = np.random.default_rng(3)
    stocks = [str(2000 + i) for i in range(30)]
    days = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(40)]
    market, rows = {}, []
    prices = dict.fromkeys(stocks, 50.0)
    for day in days:
        market[day] = {}
        for stock in stocks:
            open_ = prices[stock] * (1 + rng.normal(0, 0.01))
            prices[stock] = open_ * (1 + rng.normal(0.001, 0.02))
            market[day][stock] = quote(round(open_, 2), round(prices[stock], 2), up=round(open_ * 1.05, 2))
            if rng.random() < 0.05:
                rows.append(("STG_A", stock, day, "BUY" if rng.random() < 0.7 else "SELL"))
    rule = BacktestRule(capital_twd=1_000_000.0, max_positions=5)
    orders = orders_by_day(signals(*rows), days)
    whole = simulate({"STG_A": Book.fresh("STG_A", rule, 5)}, days[1:], market, orders)
    books = {"STG_A": Book.fresh("STG_A", rule, 5)}
    daily = []
    for day in days[1:]:
        step = simulate(books, [day], market, orders)
        daily.append(step)
        books = books_from_frames(step.nav, step.positions, {"STG_A": (rule, 5)})
    assert pl.concat([d.nav for d in daily]).equals(whole.nav)
    assert pl.concat([d.trades for d in daily]).equals(whole.trades)
    assert whole.trades.height > 10

    # The figures equal empyrical's on the same daily returns.
    returns = whole.nav["daily_return"].to_numpy()
    figures = performance(whole.nav).row(0, named=True)
    assert figures["annual_return"] == pytest.approx(empyrical.annual_return(returns), rel=1e-12)
    assert figures["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=1e-12)
    assert figures["sortino"] == pytest.approx(empyrical.sortino_ratio(returns), rel=1e-12)
    assert figures["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=1e-12)
    assert figures["volatility"] == pytest.approx(empyrical.annual_volatility(returns), rel=1e-12)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_return_figures_equal_empyrical(seed):
    returns = np.random.default_rng(seed).normal(0.0004, 0.015, 250)
    ours = return_figures(pl.Series(returns))
    assert ours["annual_return"] == pytest.approx(empyrical.annual_return(returns), rel=1e-12)
    assert ours["sharpe"] == pytest.approx(empyrical.sharpe_ratio(returns), rel=1e-12)
    assert ours["sortino"] == pytest.approx(empyrical.sortino_ratio(returns), rel=1e-12)
    assert ours["max_drawdown"] == pytest.approx(empyrical.max_drawdown(returns), rel=1e-12)
    assert ours["volatility"] == pytest.approx(empyrical.annual_volatility(returns), rel=1e-12)


def test_backtest_rule_from_yaml_names_bad_fields():
    rule, errors = parse_backtest_rule({"max_positions": 20, "broker_discount": 0.6, "odd_lots": True})
    assert (rule.max_positions, rule.broker_discount, rule.lot_size, errors) == (20, 0.6, 1, [])
    _, errors = parse_backtest_rule({"max_positons": 3, "broker_discount": 2, "odd_lots": "yes"})
    assert [field for field, _ in errors] == ["backtest.max_positons", "backtest.odd_lots", "backtest.broker_discount"]
