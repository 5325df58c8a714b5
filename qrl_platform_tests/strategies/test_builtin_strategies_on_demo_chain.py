"""The built-in strategies on the real demo chain: raw demo market → indicators (compute_range, what the
indicator assets store) → every built-in over 20 trading days, 1,800 stocks (the default demo universe,
seed 7).

What is checked is what a signal means: each strategy BUYs somewhere and SELLs somewhere, SELL is not its
"no setup" answer (at most 80 % of its BUY+SELL), and every SELL row satisfies the strategy's declared exit
(or its sell_below threshold). The universe is the default demo size (what `qrl demo` runs), not a
smaller one: the figures are the ones a new user sees.
"""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.calendar import previous_trading_days
from qrl_platform.factors.compute_range import materialize_range
from qrl_platform.market.demo import demo_market
from qrl_platform.market.ingest import ingest_days, store_frame
from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import BUILTIN_DIR, load_definitions
from qrl_platform.strategies.engine import rule_value, run_strategies
from qrl_platform.strategies.runner import load_frame

END = dt.date(2024, 11, 8)
DAYS = 20
UNIVERSE = 1800
SEED = 7
MAX_SELL_SHARE = 0.8


def materialise_demo_chain(root, end: dt.date, days: int, universe: int, seed: int) -> list[dt.date]:
    """The demo raw tables with a year of history, and the three indicator frames for the last `days`."""
    store = FrameStore(str(root))
    market = demo_market(seed, universe)
    dates = previous_trading_days(end, days)
    history = previous_trading_days(end, days + 262)  # sma_240 and 52-week factors need a year of bars
    for table in ("daily_quotes", "institutional_flows", "margin_balances", "valuations"):
        ingest_days(market, store, table, history)
    month = dt.date(end.year - 2, end.month, 1)
    while month <= end:
        store_frame(store, "monthly_revenue", month.isoformat(), market.monthly_revenue(month))
        if month.month in (1, 4, 7, 10):
            store_frame(store, "financials", month.isoformat(), market.financials(month))
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    week = end - dt.timedelta(days=(end.weekday() - 4) % 7 + 7 * 10)  # Fridays, ten weeks back
    while week <= end:
        store_frame(store, "shareholding_distribution", week.isoformat(), market.shareholding_distribution(week))
        week += dt.timedelta(days=7)
    for asset in ("technical_indicators", "fundamental_indicators", "chip_indicators"):
        materialize_range(store, asset, dates)
    return dates


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_chain")
    dates = materialise_demo_chain(root, END, DAYS, UNIVERSE, SEED)
    definitions = load_definitions(BUILTIN_DIR)
    previous = sorted({f for d in definitions for f in d.previous_day_fields()})
    frame = load_frame(FrameStore(str(root)), dates, previous_day_fields=previous)
    outcomes = run_strategies(definitions, frame, dates)
    return dates, {d.strategy_id: d for d in definitions}, {o.strategy_id: o for o in outcomes}, frame


def _counts(outcome) -> dict[str, int]:
    return dict(outcome.evaluation.signals.group_by("signal").len().iter_rows())


def test_the_run_covers_twenty_demo_days_of_every_builtin(demo_run):
    dates, definitions, outcomes, _ = demo_run
    assert len(dates) == DAYS and dates[-1] == END
    assert sorted(outcomes) == sorted(definitions) and len(outcomes) == 10
    assert all(o.status == "SUCCESS" for o in outcomes.values())
    for outcome in outcomes.values():
        assert sorted(outcome.evaluation.signals["trade_date"].unique()) == dates


@pytest.mark.parametrize(
    "strategy_id",
    [
        "STG_BREAKOUT_001",
        "STG_FOREIGN_FLOW_001",
        "STG_LOW_VOLATILITY_001",
        "STG_MARGIN_SQUEEZE_001",
        "STG_MEAN_REVERSION_001",
        "STG_MOMENTUM_001",
        "STG_MULTI_FACTOR_001",
        "STG_QUALITY_GROWTH_001",
        "STG_TRUST_FLOW_001",
        "STG_VALUE_001",
    ],
)
def test_each_builtin_buys_and_sells_and_sell_is_not_its_no_setup(demo_run, strategy_id):
    _, _, outcomes, _ = demo_run
    counts = _counts(outcomes[strategy_id])
    buy, sell = counts.get("BUY", 0), counts.get("SELL", 0)
    print(f"{strategy_id}: BUY {buy} SELL {sell} HOLD {counts.get('HOLD', 0)}")
    assert buy >= 1 and sell >= 1
    assert sell / (buy + sell) <= MAX_SELL_SHARE


def test_every_sell_satisfies_the_declared_exit_or_threshold(demo_run):
    """SELL rows re-checked against the factor frame (full precision; the stored factor_values keep 8
    significant digits): the exit's conditions all hold, or the score is at or below sell_below. A strategy
    without sell_below SELLs only on its exit."""
    _, definitions, outcomes, frame = demo_run
    for strategy_id, definition in definitions.items():
        sells = outcomes[strategy_id].evaluation.signals.filter(pl.col("signal") == "SELL")
        values = sells.select("stock_id", "trade_date", "score").join(frame, on=["stock_id", "trade_date"])
        assert values.height == sells.height
        exit_holds = (
            values.select(pl.all_horizontal([rule_value(c).fill_null(0.0) == 1.0 for c in definition.exit])).to_series()
            if definition.exit
            else pl.Series([False] * sells.height)
        )
        threshold = definition.signal.sell_below
        below = values["score"] <= threshold if threshold is not None else pl.Series([False] * sells.height)
        assert (exit_holds | below).all(), strategy_id
        if threshold is None:
            assert exit_holds.all(), strategy_id


def test_the_strategies_that_used_sell_for_no_setup_now_hold(demo_run):
    """Breakout and margin squeeze never sold; trust flow and low volatility sold for "no setup"
    (sell_below on a score that is low whenever the setup is absent). All four now SELL only on an exit."""
    _, definitions, outcomes, _ = demo_run
    for strategy_id in ("STG_BREAKOUT_001", "STG_MARGIN_SQUEEZE_001", "STG_TRUST_FLOW_001", "STG_LOW_VOLATILITY_001"):
        definition = definitions[strategy_id]
        assert definition.signal.sell_below is None and definition.exit, strategy_id
        counts = _counts(outcomes[strategy_id])
        assert counts["HOLD"] > counts["BUY"] + counts["SELL"], strategy_id
