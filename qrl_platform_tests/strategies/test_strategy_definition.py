"""Strategy definitions as data: the built-ins validate, and every kind of bad definition is rejected
with a message naming the strategy (and file) and the field."""

import copy
import json

import pytest

from qrl_platform.strategies.definition import (
    BUILTIN_DIR,
    Condition,
    InvalidStrategy,
    ScoredTerm,
    load_definitions,
    parse_definition,
    registry_factor_ids,
)

VALID = {
    "strategy_id": "STG_TEST_001",
    "name": "Test",
    "status": "ACTIVE",
    "version": 1,
    "horizon_days": 5,
    "rules": [
        {"factor": "ret_20", "transform": "rank", "weight": 2},
        {"factor": "close", "op": ">", "other": "sma_20", "weight": 1},
        {"factor": "rsi_14", "op": "between", "value": [30, 70], "weight": 1},
    ],
    "signal": {"buy_above": 0.7, "sell_below": 0.3},
}


def _with(path: str, value, base=VALID) -> dict:
    """VALID with one field replaced (dotted path, list indexes allowed); value=... deletes it."""
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = raw
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return raw


def _error(raw) -> str:
    with pytest.raises(InvalidStrategy) as info:
        parse_definition(raw)
    return str(info.value)


def test_builtin_strategies_are_valid_and_cover_the_ten_families():
    definitions = load_definitions(BUILTIN_DIR)
    ids = {d.strategy_id for d in definitions}
    assert ids == {
        "STG_MOMENTUM_001",
        "STG_MEAN_REVERSION_001",
        "STG_VALUE_001",
        "STG_QUALITY_GROWTH_001",
        "STG_FOREIGN_FLOW_001",
        "STG_TRUST_FLOW_001",
        "STG_MARGIN_SQUEEZE_001",
        "STG_BREAKOUT_001",
        "STG_LOW_VOLATILITY_001",
        "STG_MULTI_FACTOR_001",
    }
    assert all(d.is_active for d in definitions)
    # Between them the built-ins exercise every rule type the engine offers.
    kinds = {r.op for d in definitions for r in d.rules if isinstance(r, Condition)}
    kinds |= {r.transform for d in definitions for r in d.rules if isinstance(r, ScoredTerm)}
    assert kinds >= {">", ">=", "<", "<=", "between", "rank", "zscore", "raw"}


def test_valid_definition_round_trips_through_its_stored_json():
    definition = parse_definition(VALID)
    again = parse_definition(json.loads(definition.to_json()))
    assert again == definition
    assert definition.fields() == ["ret_20", "close", "sma_20", "rsi_14"]


def test_unknown_factor_names_strategy_field_and_suggests():
    message = _error(_with("rules.0.factor", "pe_ratio"))
    assert message == "STG_TEST_001: rules[0].factor 'pe_ratio' is not a known factor (did you mean 'pe'?)"


def test_unknown_other_factor_is_rejected():
    assert "rules[1].other 'sma20' is not a known factor (did you mean 'sma_20'?)" in _error(
        _with("rules.1.other", "sma20")
    )


def test_bad_operator():
    message = _error(_with("rules.1.op", "=="))
    assert "STG_TEST_001: rules[1].op '==' is not a supported operator; use one of >, >=, <, <=, between" in message


def test_negative_weight_and_weights_summing_to_zero():
    assert "rules[0].weight -1 is negative" in _error(_with("rules.0.weight", -1))
    zero = copy.deepcopy(VALID)
    for rule in zero["rules"]:
        rule["weight"] = 0
    assert "STG_TEST_001: rules weights sum to 0" in _error(zero)


def test_confidence_range_must_lie_in_zero_one():
    message = _error(_with("signal", {"buy_above": 0.7, "confidence_range": [-0.2, 1.0]}))
    assert "STG_TEST_001: signal.confidence_range must lie within [0, 1], got [-0.2, 1]" in message


def test_missing_required_fields_are_named():
    assert "STG_TEST_001: horizon_days must be an integer between 1 and 250" in _error(_with("horizon_days", ...))
    assert "STG_TEST_001: name is required" in _error(_with("name", ...))
    assert "<missing strategy_id>: strategy_id must match" in _error(_with("strategy_id", ...))
    assert "STG_TEST_001: signal is required" in _error(_with("signal", ...))
    assert "STG_TEST_001: rules must be a non-empty list" in _error(_with("rules", []))


def test_thresholds_must_make_sense():
    assert "sell_below (0.8) must be below buy_above (0.7)" in _error(_with("signal.sell_below", 0.8))
    assert "signal.buy_above must be in (0, 1]" in _error(_with("signal.buy_above", 1.5))
    assert "signal needs buy_above and/or sell_below" in _error(_with("signal", {}))


def test_rule_shape_errors():
    assert "needs exactly one of 'op'" in _error(_with("rules.0", {"factor": "ret_20", "weight": 1}))
    assert "rules[2].value must be a list of two numbers" in _error(_with("rules.2.value", 30))
    assert "rules[2].value low 70 is above high 30" in _error(_with("rules.2.value", [70, 30]))
    raw_without_bounds = _with("rules.0", {"factor": "rsi_14", "transform": "raw", "weight": 1})
    assert "rules[0].bounds is required for transform 'raw'" in _error(raw_without_bounds)
    assert "rules[0].transform 'log' is not a supported transform" in _error(_with("rules.0.transform", "log"))
    assert "rules[1].scale must be > 0" in _error(_with("rules.1.scale", 0))


def test_typo_in_a_field_name_is_rejected_not_ignored():
    rule = {"factor": "ret_20", "transform": "rank", "wieght": 2, "weight": 1}
    assert "rules[0].wieght is not a known field (did you mean 'weight'?)" in _error(_with("rules.0", rule))


def test_status_and_universe_values():
    assert "status must be one of ACTIVE/INACTIVE, got 'RUNNING'" in _error(_with("status", "RUNNING"))
    assert "universe.market_type must be one of ALL/TWSE/TPEx" in _error(_with("universe", {"market_type": "OTC"}))


def test_all_errors_reported_at_once():
    raw = _with("rules.0.factor", "nope")
    raw["version"] = 0
    lines = _error(raw).splitlines()
    assert len(lines) == 2 and all(line.startswith("STG_TEST_001: ") for line in lines)


def test_files_name_the_file_and_duplicate_ids_are_rejected(tmp_path):
    (tmp_path / "a.yaml").write_text(json.dumps(VALID))
    (tmp_path / "b.yaml").write_text(json.dumps(VALID))
    with pytest.raises(InvalidStrategy, match=r"b.yaml: STG_TEST_001: strategy_id is also declared in a.yaml"):
        load_definitions(tmp_path)
    (tmp_path / "b.yaml").write_text(json.dumps(_with("rules.1.op", "~")))
    with pytest.raises(InvalidStrategy, match=r"b.yaml: STG_TEST_001: rules\[1\].op '~' is not a supported operator"):
        load_definitions(tmp_path)


def test_factor_ids_can_be_given_explicitly():
    with pytest.raises(InvalidStrategy, match="'ret_20' is not a known factor"):
        parse_definition(VALID, factor_ids={"sma_20", "rsi_14"})


def test_known_factors_come_from_the_indicator_registry():
    from qrl_platform.factors.registry import ALL_FACTORS

    assert registry_factor_ids() == {factor.factor_id for factor in ALL_FACTORS}
    assert {"pe", "rsi_14", "foreign_net_pct_5", "big_holder_pct_change_1w"} <= registry_factor_ids()


def test_cross_rules_parse_and_declare_the_previous_day_fields_they_read():
    raw = _with("rules.1", {"factor": "kd_k", "op": "cross_above", "other": "kd_d", "weight": 1})
    raw["rules"].append({"factor": "rsi_14", "op": "cross_below", "value": 70, "weight": 1})
    definition = parse_definition(raw)
    assert definition.rules[1].describe() == "kd_k cross_above kd_d"
    assert definition.previous_day_fields() == ["kd_k", "kd_d", "rsi_14"]
    assert parse_definition(definition.to_dict()) == definition
    assert "rules[1].other 'kd_x' is not a known factor" in _error(_with("rules.1.other", "kd_x", raw))
    message = _error(_with("rules.3.value", [60, 80], raw))
    assert "STG_TEST_001: rules[3].value" in message


def test_exit_conditions_parse_round_trip_and_feed_fields():
    raw = {
        **VALID,
        "exit": [{"factor": "close", "op": "<", "other": "bb_lower"}, {"factor": "ret_1", "op": "<", "value": 0}],
    }
    definition = parse_definition(raw)
    assert definition.exit == (
        Condition(factor="close", op="<", weight=1.0, other="bb_lower"),
        Condition(factor="ret_1", op="<", weight=1.0, value=0.0),
    )
    assert definition.fields() == ["ret_20", "close", "sma_20", "rsi_14", "bb_lower", "ret_1"]
    stored = definition.to_dict()
    assert stored["exit"] == [
        {"factor": "close", "op": "<", "other": "bb_lower"},
        {"factor": "ret_1", "op": "<", "value": 0.0},
    ]
    assert parse_definition(json.loads(definition.to_json())) == definition
    # A definition without an exit stores no `exit` key (stored definitions keep their content key).
    assert "exit" not in parse_definition(VALID).to_dict()


def test_exit_errors_name_the_field():
    base = {**VALID, "exit": [{"factor": "close", "op": "<", "other": "bb_lower"}]}
    assert "STG_TEST_001: exit[0].weight is not a known field" in _error(_with("exit.0.weight", 1, base))
    assert "exit[0].factor 'pe_ratio' is not a known factor (did you mean 'pe'?)" in _error(
        _with("exit.0.factor", "pe_ratio", base)
    )
    assert "exit[0].op is required: an exit is a condition (scored terms belong in rules)" in _error(
        {**VALID, "exit": [{"factor": "pe", "transform": "rank"}]}
    )
    assert "exit must be a non-empty list of conditions" in _error({**VALID, "exit": []})
    # An exit alone is a valid signal mapping (long-only strategies used to be BUY/HOLD only).
    only_exit = parse_definition({**base, "signal": {}})
    assert only_exit.signal.buy_above is None and len(only_exit.exit) == 1
    assert "needs buy_above and/or sell_below, or an exit" in _error(_with("signal", {}))


def test_a_backtest_block_sets_the_evaluation_rule_and_round_trips():
    raw = _with("backtest", {"max_positions": 5, "broker_discount": 0.6, "odd_lots": True})
    definition = parse_definition(raw)
    assert (definition.backtest.max_positions, definition.backtest.broker_discount, definition.backtest.lot_size) == (
        5,
        0.6,
        1,
    )
    assert parse_definition(json.loads(definition.to_json())) == definition
    # Without the block the stored content is what it was before the block existed (no version bump).
    assert "backtest" not in parse_definition(VALID).to_dict()
    assert _error(_with("backtest", {"max_positions": 0, "lots": 2})) == (
        "STG_TEST_001: backtest.lots unknown field; known: ['broker_discount', 'buy_full_cash_delivery', "
        "'capital_twd', 'hold_days', 'max_positions', 'odd_lots']\nSTG_TEST_001: backtest.max_positions is out of range: 0"
    )
