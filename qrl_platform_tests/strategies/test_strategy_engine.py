"""The engine on tiny frames whose answers are worked out by hand in the comments."""

import datetime as dt
import json
import math

import polars as pl
import pytest

from qrl_platform.storage.frames import FrameStore
from qrl_platform.strategies.definition import parse_definition
from qrl_platform.strategies.engine import (
    RunOptions,
    UniverseOverride,
    build_frame,
    evaluate_strategy,
    run_strategies,
    with_previous_day,
)
from qrl_platform.strategies.runner import INDICATOR_ASSETS, load_frame

D1, D2 = dt.date(2024, 3, 5), dt.date(2024, 3, 6)
STOCKS = ["A", "B", "C", "D", "E"]


def frame(factors: dict[str, list], *, day=D1, stocks=STOCKS, **quote_overrides) -> pl.DataFrame:
    n = len(stocks)
    quotes = {
        "stock_id": stocks,
        "trade_date": [day] * n,
        "market": ["TWSE"] * n,
        "close": [10.0, 20.0, 30.0, 40.0, 50.0][:n] if n <= 5 else [10.0] * n,
        "volume": [1_000_000] * n,
        "is_etf": [False] * n,
        "is_suspended": [False] * n,
    }
    quotes.update(quote_overrides)
    indicators = pl.DataFrame(
        {"stock_id": stocks, "trade_date": [day] * n, **factors}, schema_overrides={k: pl.Float64 for k in factors}
    )
    return build_frame(pl.DataFrame(quotes), [indicators])


def strategy(rules: list[dict], signal: dict | None = None, **extra):
    raw = {
        "strategy_id": extra.pop("strategy_id", "STG_T_001"),
        "name": "t",
        "status": "ACTIVE",
        "version": 1,
        "horizon_days": 5,
        "rules": rules,
        "signal": signal or {"buy_above": 1.0, "sell_below": 0.0},
        "universe": extra.pop("universe", {"min_volume_lots": 0}),
    }
    raw.update(extra)
    return parse_definition(raw)


def by_stock(evaluation, column: str) -> dict:
    return dict(evaluation.signals.select("stock_id", column).iter_rows())


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        # rsi_14 = 1, 2, 3, 4, null for A..E
        (">", 2, {"A": "SELL", "B": "SELL", "C": "BUY", "D": "BUY"}),
        (">=", 2, {"A": "SELL", "B": "BUY", "C": "BUY", "D": "BUY"}),
        ("<", 2, {"A": "BUY", "B": "SELL", "C": "SELL", "D": "SELL"}),
        ("<=", 2, {"A": "BUY", "B": "BUY", "C": "SELL", "D": "SELL"}),
        ("between", [2, 3], {"A": "SELL", "B": "BUY", "C": "BUY", "D": "SELL"}),
    ],
)
def test_condition_operators(op, value, expected):
    # One condition: score 1 when true (BUY at buy_above 1.0), 0 when false (SELL at sell_below 0).
    # E has no rsi_14: the rule is unavailable, the stock gets no signal rather than a SELL.
    result = evaluate_strategy(
        strategy([{"factor": "rsi_14", "op": op, "value": value, "weight": 1}]),
        frame({"rsi_14": [1, 2, 3, 4, None]}),
        [D1],
    )
    assert by_stock(result, "signal") == expected
    assert result.per_day.row(0, named=True) == {
        "trade_date": D1,
        "stocks_evaluated": 5,
        "signals_generated": 4,
        "buy_signals": sum(s == "BUY" for s in expected.values()),
        "sell_signals": sum(s == "SELL" for s in expected.values()),
        "hold_signals": 0,
        "insufficient_data": 1,
    }


def test_condition_against_another_factor_with_scale():
    # close 10, 20, 30, 40, 50 vs 1.1 × sma_20 = 9.9, 23.1, 31.9, 45.1, 44 → true, false, false, false, true
    result = evaluate_strategy(
        strategy([{"factor": "close", "op": ">", "other": "sma_20", "scale": 1.1, "weight": 1}]),
        frame({"sma_20": [9, 21, 29, 41, 40]}),
        [D1],
    )
    assert by_stock(result, "score") == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0, "E": 1.0}


def two_days(previous: dict[str, list], today: dict[str, list]) -> pl.DataFrame:
    """D2's rows with `<factor>@prev` columns holding D1's values (D1 is D2's previous trading day)."""
    both = pl.concat([frame(previous, day=D1), frame(today, day=D2)])
    return with_previous_day(both, [D2], {D2: D1}, list(today))


def test_cross_above_another_factor_needs_yesterday_at_or_below_and_today_above():
    # (k, d) yesterday -> today:  A (20,30)->(40,35) crossed;  B (40,30)->(50,35) was already above;
    # C (30,30)->(31,30) from equal to above, crossed;  D (20,30)->(25,30) still below;
    # E has no k yesterday: the rule is unavailable, no signal.
    result = evaluate_strategy(
        strategy([{"factor": "kd_k", "op": "cross_above", "other": "kd_d", "weight": 1}]),
        two_days(
            {"kd_k": [20, 40, 30, 20, None], "kd_d": [30, 30, 30, 30, 30]},
            {"kd_k": [40, 50, 31, 25, 40], "kd_d": [35, 35, 30, 30, 30]},
        ),
        [D2],
    )
    assert by_stock(result, "signal") == {"A": "BUY", "B": "SELL", "C": "BUY", "D": "SELL"}
    assert result.signals["trade_date"].unique().to_list() == [D2]  # yesterday only informs, it is not scored


def test_cross_below_a_constant():
    # kd_k crossing below 80: A 85->75 yes; B 75->70 was already below; C 85->80 not below yet; D 70->60 no;
    # E 85->null unavailable.
    result = evaluate_strategy(
        strategy([{"factor": "kd_k", "op": "cross_below", "value": 80, "weight": 1}]),
        two_days({"kd_k": [85, 75, 85, 70, 85]}, {"kd_k": [75, 70, 80, 60, None]}),
        [D2],
    )
    assert by_stock(result, "score") == {"A": 1.0, "B": 0.0, "C": 0.0, "D": 0.0}


def test_a_cross_rule_without_previous_day_values_is_a_clear_error():
    definition = strategy([{"factor": "kd_k", "op": "cross_above", "other": "kd_d", "weight": 1}])
    with pytest.raises(ValueError, match=r"STG_T_001: its cross rules need the previous trading day's values"):
        evaluate_strategy(definition, frame({"kd_k": [1, 2, 3, 4, 5], "kd_d": [1, 2, 3, 4, 5]}), [D1])


def test_rank_is_a_percentile_with_average_ties_and_direction():
    # ret_20 = 0.1, 0.3, 0.3, -0.1, null → ranks among the 4 present: D 1, A 2, B and C 3.5
    # percentile (rank − 1)/(n − 1): D 0, A 1/3, B = C = 2.5/3 = 0.8333333333
    data = frame({"ret_20": [0.1, 0.3, 0.3, -0.1, None]})
    higher = evaluate_strategy(strategy([{"factor": "ret_20", "transform": "rank", "weight": 1}]), data, [D1])
    assert by_stock(higher, "score") == pytest.approx({"A": 1 / 3, "B": 2.5 / 3, "C": 2.5 / 3, "D": 0.0})
    lower = evaluate_strategy(
        strategy([{"factor": "ret_20", "transform": "rank", "direction": "lower", "weight": 1}]), data, [D1]
    )
    assert by_stock(lower, "score") == pytest.approx({"A": 2 / 3, "B": 0.5 / 3, "C": 0.5 / 3, "D": 1.0})


def test_zscore_uses_population_std_and_maps_to_unit_interval():
    # pe = 1..5: mean 3, population std √2; z = ±1.41421, ±0.70711, 0 → (z + 3)/6
    result = evaluate_strategy(
        strategy([{"factor": "pe", "transform": "zscore", "weight": 1}]), frame({"pe": [1, 2, 3, 4, 5]}), [D1]
    )
    z = [(v - 3) / math.sqrt(2) for v in (1, 2, 3, 4, 5)]
    assert by_stock(result, "score") == pytest.approx({s: (zz + 3) / 6 for s, zz in zip(STOCKS, z, strict=True)})


def test_zscore_is_clipped_at_three_standard_deviations():
    # 11 zeros and one 1: mean 1/12, std √(11)/12 → z(1) = 3.317 → clipped to 3 → 1.0;
    # z(0) = −1/√11 = −0.301511 → (3 − 0.301511)/6 = 0.449748
    stocks = [f"S{i:02d}" for i in range(12)]
    data = frame({"pe": [0.0] * 11 + [1.0]}, stocks=stocks)
    result = evaluate_strategy(strategy([{"factor": "pe", "transform": "zscore", "weight": 1}]), data, [D1])
    scores = by_stock(result, "score")
    assert scores["S11"] == 1.0
    assert scores["S00"] == pytest.approx((3 - 1 / math.sqrt(11)) / 6)


def test_raw_transform_clips_to_bounds_and_can_invert():
    # rsi_14 = 10, 20, 50, 80, 95 with bounds [20, 80] → 0, 0, 0.5, 1, 1; lower → 1, 1, 0.5, 0, 0
    data = frame({"rsi_14": [10, 20, 50, 80, 95]})
    raw = evaluate_strategy(
        strategy([{"factor": "rsi_14", "transform": "raw", "bounds": [20, 80], "weight": 1}]), data, [D1]
    )
    assert by_stock(raw, "score") == {"A": 0.0, "B": 0.0, "C": 0.5, "D": 1.0, "E": 1.0}
    inverted = evaluate_strategy(
        strategy([{"factor": "rsi_14", "transform": "raw", "bounds": [20, 80], "direction": "lower", "weight": 1}]),
        data,
        [D1],
    )
    assert by_stock(inverted, "score") == {"A": 1.0, "B": 1.0, "C": 0.5, "D": 0.0, "E": 0.0}


def test_weighted_score_coverage_signal_and_confidence():
    # rules: rank(ret_20) weight 2, close > sma_20 weight 1; buy ≥ 0.6, sell ≤ 0.3, confidence 0.5..1
    # ret_20 0.1, −0.2, 0.05, null, 0.3 → percentiles among A, B, C, E: B 0, C 1/3, A 2/3, E 1
    # close > sma_20 (10>9, 20>21, 30>29, 40>41, 50>null): A 1, B 0, C 1, D 0, E unavailable
    # A: (2·2/3 + 1)/3 = 7/9 → BUY, confidence 0.5 + 0.5·(7/9 − 0.6)/0.4 = 0.722222
    # B: 0 → SELL, confidence 0.5 + 0.5·(0.3 − 0)/0.3 = 1.0
    # C: (2/3 + 1)/3 = 5/9 → HOLD; band [0.3, 0.6] middle 0.45 half 0.15 →
    #    0.5 + 0.5·(1 − |5/9 − 0.45|/0.15) = 0.648148
    # D: only the condition is available: 1/3 of the weight < min_coverage 0.5 → no signal
    # E: only the rank (weight 2 of 3 ≥ 0.5): score 1 → BUY, confidence 1.0
    definition = strategy(
        [
            {"factor": "ret_20", "transform": "rank", "weight": 2},
            {"factor": "close", "op": ">", "other": "sma_20", "weight": 1},
        ],
        {"buy_above": 0.6, "sell_below": 0.3, "confidence_range": [0.5, 1.0], "min_coverage": 0.5},
    )
    data = frame({"ret_20": [0.1, -0.2, 0.05, None, 0.3], "sma_20": [9, 21, 29, 41, None]})
    result = evaluate_strategy(definition, data, [D1])
    assert by_stock(result, "signal") == {"A": "BUY", "B": "SELL", "C": "HOLD", "E": "BUY"}
    assert by_stock(result, "score") == pytest.approx({"A": 7 / 9, "B": 0.0, "C": 5 / 9, "E": 1.0})
    assert by_stock(result, "confidence") == pytest.approx({"A": 0.722222, "B": 1.0, "C": 0.648148, "E": 1.0}, abs=1e-6)
    assert json.loads(by_stock(result, "factor_values")["A"]) == {"ret_20": 0.1, "close": 10.0, "sma_20": 9.0}
    diagnostics = result.diagnostics[D1]
    assert diagnostics["insufficient_data"] == 1 and diagnostics["universe_size"] == 5
    assert diagnostics["rules"][1] == {"rule": "close > sma_20", "weight": 1.0, "available": 4, "mean_value": 0.5}


def test_long_only_strategy_has_no_sell_and_hold_band_up_to_buy():
    # buy_above 0.5 only: HOLD band [0, 0.5], middle 0.25: score 0 → HOLD with confidence 0.5 (at the edge)
    definition = strategy([{"factor": "rsi_14", "op": ">", "value": 50, "weight": 1}], {"buy_above": 0.5})
    result = evaluate_strategy(definition, frame({"rsi_14": [10, 60, 70, 20, 80]}), [D1])
    assert by_stock(result, "signal") == {"A": "HOLD", "B": "BUY", "C": "BUY", "D": "HOLD", "E": "BUY"}
    assert by_stock(result, "confidence")["A"] == 0.5


def test_universe_filters_market_volume_etf_suspended():
    data = frame(
        {"rsi_14": [60, 60, 60, 60, 60]},
        market=["TWSE", "TPEx", "TWSE", "TWSE", "TWSE"],
        volume=[600_000, 600_000, 400_000, 600_000, 600_000],  # C: 400 lots < 500
        is_etf=[False, False, False, True, False],  # D is an ETF
        is_suspended=[False, False, False, False, True],  # E is suspended
    )
    rule = [{"factor": "rsi_14", "op": ">", "value": 50, "weight": 1}]
    default = evaluate_strategy(strategy(rule, universe={}), data, [D1])  # ALL, 500 lots, no ETF, no suspended
    assert set(by_stock(default, "signal")) == {"A", "B"}
    twse = evaluate_strategy(strategy(rule, universe={"market_type": "TWSE"}), data, [D1])
    assert set(by_stock(twse, "signal")) == {"A"}
    # The run's universe options override the strategy's own.
    wide = RunOptions(universe=UniverseOverride(min_volume_lots=0, exclude_etf=False, exclude_suspended=False))
    assert set(by_stock(evaluate_strategy(strategy(rule, universe={}), data, [D1], wide), "signal")) == set(STOCKS)


def test_cross_sectional_ranks_are_per_day():
    day1 = frame({"ret_20": [1, 2, 3, 4, 5]}, day=D1)
    day2 = frame({"ret_20": [50, 40, 30, 20, 10]}, day=D2)
    result = evaluate_strategy(
        strategy([{"factor": "ret_20", "transform": "rank", "weight": 1}]), pl.concat([day1, day2]), [D1, D2]
    )
    scores = {(r["stock_id"], r["trade_date"]): r["score"] for r in result.signals.iter_rows(named=True)}
    assert scores[("A", D1)] == 0.0 and scores[("E", D1)] == 1.0
    assert scores[("A", D2)] == 1.0 and scores[("E", D2)] == 0.0
    assert result.per_day["stocks_evaluated"].to_list() == [5, 5]


def test_save_all_signals_false_keeps_buy_and_sell_only_and_no_factor_values():
    options = RunOptions(save_all_signals=False, include_factor_values=False, include_diagnostics=False)
    definition = strategy(
        [{"factor": "rsi_14", "transform": "raw", "bounds": [0, 100], "weight": 1}],
        {"buy_above": 0.7, "sell_below": 0.3},
    )
    result = evaluate_strategy(definition, frame({"rsi_14": [10, 50, 50, 90, 60]}), [D1], options)
    assert by_stock(result, "signal") == {"A": "SELL", "D": "BUY"}
    assert result.signals["factor_values"].null_count() == 2
    assert result.per_day.row(0, named=True)["hold_signals"] == 0
    assert result.diagnostics == {}


def test_nan_and_infinity_become_missing():
    data = frame({"rsi_14": [float("nan"), float("inf"), 3.0, 4.0, 5.0]})
    assert data["rsi_14"].null_count() == 2
    result = evaluate_strategy(strategy([{"factor": "rsi_14", "op": ">", "value": 3, "weight": 1}]), data, [D1])
    assert set(by_stock(result, "signal")) == {"C", "D", "E"}


def test_a_broken_strategy_fails_alone():
    data = frame({"rsi_14": [10, 60, 70, 20, 80]})
    good = strategy([{"factor": "rsi_14", "op": ">", "value": 50, "weight": 1}], strategy_id="STG_GOOD_001")
    # A known factor the indicator frames did not produce: polars raises at evaluation time.
    broken = strategy([{"factor": "pe", "op": ">", "value": 10, "weight": 1}], strategy_id="STG_BROKEN_001")
    outcomes = run_strategies([broken, good], data, [D1])
    assert [(o.strategy_id, o.status) for o in outcomes] == [("STG_BROKEN_001", "FAILED"), ("STG_GOOD_001", "SUCCESS")]
    assert outcomes[0].error_type == "ColumnNotFoundError" and "pe" in outcomes[0].error_message
    assert outcomes[1].evaluation.signals.height == 5
    # The same in worker processes (the runner's way, with a time limit): the same outcome and error.
    isolated = run_strategies([broken, good], data, [D1], timeout_seconds=60)
    assert [(o.strategy_id, o.status) for o in isolated] == [(o.strategy_id, o.status) for o in outcomes]
    assert isolated[0].error_type == "ColumnNotFoundError" and "pe" in isolated[0].error_message
    assert isolated[1].evaluation.signals.equals(outcomes[1].evaluation.signals)


def test_runner_reads_the_previous_trading_day_across_a_closure(tmp_path):
    """2024-11-01's previous trading day is 2024-10-30: 10-31 was the typhoon closure (calendar override)."""
    store = FrameStore(str(tmp_path))
    values = {dt.date(2024, 10, 29): 1.0, dt.date(2024, 10, 30): 2.0, dt.date(2024, 11, 1): 3.0}
    for day, kd_k in values.items():
        keys = {"stock_id": ["A"], "trade_date": [day]}
        store.write(
            "daily_quotes",
            day.isoformat(),
            pl.DataFrame(
                {**keys, "market": ["TWSE"], "close": [10.0], "volume": [1_000_000], "is_etf": [False]}
                | {"is_suspended": [False]}
            ),
        )
        for asset in INDICATOR_ASSETS:
            factors = {"kd_k": [kd_k]} if asset == "technical_indicators" else {f"{asset}_x": [0.0]}
            store.write(asset, day.isoformat(), pl.DataFrame({**keys, **factors}))

    loaded = load_frame(store, [dt.date(2024, 11, 1)], previous_day_fields=["kd_k"])
    assert loaded.select("trade_date", "kd_k", "kd_k@prev").rows() == [(dt.date(2024, 11, 1), 3.0, 2.0)]
    assert "kd_k@prev" not in load_frame(store, [dt.date(2024, 11, 1)]).columns  # read only when a rule needs it


def test_exit_conditions_sell_only_when_all_hold_and_veto_a_buy():
    # entry: rsi_14 > 50 (buy_above 1.0); exit: close < sma_20 AND ret_1 < 0; no sell_below.
    # A: rsi 60 (entry), close 10 < 11, ret_1 −0.01 → exit holds → SELL (vetoes the BUY), score 1
    # B: rsi 60, close 20 < 21 but ret_1 +0.01 → exit does not hold → BUY
    # C: rsi 10, close 30 < 31, ret_1 −0.02 → exit → SELL, confidence 0.5 + 0.5·(1 − 0) = 1.0
    # D: rsi 10, close 40 > 39 → no setup, no exit → HOLD
    # E: rsi 10, sma_20 missing → that exit condition does not hold → HOLD
    definition = strategy(
        [{"factor": "rsi_14", "op": ">", "value": 50, "weight": 1}],
        {"buy_above": 1.0},
        exit=[{"factor": "close", "op": "<", "other": "sma_20"}, {"factor": "ret_1", "op": "<", "value": 0}],
    )
    data = frame(
        {"rsi_14": [60, 60, 10, 10, 10], "sma_20": [11, 21, 31, 39, None], "ret_1": [-0.01, 0.01, -0.02, -0.01, -0.03]}
    )
    result = evaluate_strategy(definition, data, [D1])
    assert by_stock(result, "signal") == {"A": "SELL", "B": "BUY", "C": "SELL", "D": "HOLD", "E": "HOLD"}
    # An exit SELL's confidence: 0.5 + 0.5·(1 − score): A has score 1 → 0.5, C score 0 → 1.0
    assert by_stock(result, "confidence")["A"] == 0.5 and by_stock(result, "confidence")["C"] == 1.0
    assert result.per_day.row(0, named=True)["sell_signals"] == 2
    # The exit's inputs are part of the stored factor values.
    assert json.loads(by_stock(result, "factor_values")["A"]) == {
        "rsi_14": 60.0,
        "close": 10.0,
        "sma_20": 11.0,
        "ret_1": -0.01,
    }


def test_exit_and_sell_below_both_sell():
    # score = raw(rsi 0..100); sell_below 0.2; exit rsi_14 >= 90 (an opposite setup at the top)
    # rsi 10 → 0.1 ≤ 0.2 → SELL; 50 → HOLD; 95 → exit → SELL (it would have been a BUY at ≥ 0.8)
    definition = strategy(
        [{"factor": "rsi_14", "transform": "raw", "bounds": [0, 100], "weight": 1}],
        {"buy_above": 0.8, "sell_below": 0.2},
        exit=[{"factor": "rsi_14", "op": ">=", "value": 90}],
    )
    result = evaluate_strategy(definition, frame({"rsi_14": [10, 50, 95, 85, 20]}), [D1])
    assert by_stock(result, "signal") == {"A": "SELL", "B": "HOLD", "C": "SELL", "D": "BUY", "E": "SELL"}
