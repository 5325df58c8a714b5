"""The plan maths by hand: thresholds, rounding down to the step, caps, bad prices, locked funds."""

import datetime as dt
from decimal import Decimal as D

import pytest

from qrl_platform.treasury.mexc_client import parse_balances, parse_symbol_rules
from qrl_platform.treasury.rebalance import (
    BUY,
    HOLD,
    REASON_BUY,
    REASON_SELL,
    SELL,
    Balances,
    RebalanceParams,
    SymbolRules,
    plan_rebalance,
)
from qrl_platform.treasury.simulated import SIMULATED_EXCHANGE_INFO
from qrl_platform_tests.treasury.spec import SPEC_PLAN_FIELDS

NOW = dt.datetime(2026, 11, 22, 7, 45, tzinfo=dt.UTC)
RULES = SymbolRules(
    symbol="QRLUSDT",
    base_asset="QRL",
    quote_asset="USDT",
    status="1",
    spot_trading_allowed=True,
    order_types=("LIMIT", "MARKET"),
    base_precision=2,
    quote_precision=4,
    min_qty=D("0.1"),
    min_notional=D("1"),
    max_notional=D("2000000"),
)
PARAMS = RebalanceParams(max_order_notional=None, fee_rate=D("0.002"))


def plan(price, qrl, usdt, *, rules=RULES, params=PARAMS, qrl_locked="0", usdt_locked="0"):
    balances = Balances(D(qrl), D(qrl_locked), D(usdt), D(usdt_locked))
    return plan_rebalance(
        symbol="QRLUSDT",
        price=None if price is None else D(price),
        balances=balances,
        rules=rules,
        params=params,
        timestamp=NOW,
    )


def test_sell_when_qrl_above_target_with_exact_numbers():
    result = plan("0.5", "1000", "300")  # value 500 + 300 = 800; target 400; delta +100 → 200 QRL
    assert (result.action, result.reason) == (SELL, REASON_SELL)
    assert result.total_value == D("800.0") and result.qrl_value == D("500.0")
    assert result.current_ratio == D("0.625")
    assert result.quantity == D("200.00") and result.notional_usdt == D("100.000")


def test_buy_when_qrl_below_target():
    result = plan("0.5", "200", "500")  # 100 + 500 = 600; target 300; delta −200 → 400 QRL
    assert (result.action, result.reason) == (BUY, REASON_BUY)
    assert result.quantity == D("400.00")
    assert result.notional_usdt <= D("500")


def test_hold_within_threshold_and_within_min_notional():
    within_threshold = plan("0.5", "1000", "495")  # delta 2.5 of 995 = 0.25 % < 1 %
    assert within_threshold.action == HOLD and within_threshold.reason.startswith("within threshold")
    tiny = plan("0.5", "2", "0.5", params=RebalanceParams(threshold=D("0"), fee_rate=D("0")))
    # value 1 + 0.5; delta 0.25 < min notional 1 even though the threshold is 0
    assert tiny.action == HOLD and tiny.reason.startswith("within min notional")
    assert within_threshold.quantity == 0 and within_threshold.notional_usdt == 0


def test_quantity_is_rounded_down_to_the_exchange_step_never_up():
    result = plan("0.3333", "1000", "100")  # 333.3 + 100; delta 116.65 → 349.98499… QRL
    assert result.action == SELL
    assert result.quantity == D("349.98")
    assert result.quantity.as_tuple().exponent == -2
    coarse = parse_symbol_rules(
        {"symbols": [{**SIMULATED_EXCHANGE_INFO["symbols"][0], "baseAssetPrecision": 0}]}, "QRLUSDT"
    )
    assert plan("0.3333", "1000", "100", rules=coarse).quantity == D("349")


def test_buy_is_capped_by_free_usdt_after_fees_and_by_max_order_notional():
    result = plan("1", "0", "100")  # wants 50 QRL; free USDT allows 100 / 1.002 = 99.8 → not binding
    assert result.quantity == D("50.00")
    capped = plan("1", "0", "100", params=RebalanceParams(max_order_notional=D("20"), fee_rate=D("0.002")))
    assert capped.quantity == D("20.00") and "max order notional" in capped.capped_by
    assert "capped by max order notional" in capped.details
    # With a 0 % target everything should be sold, but the order is capped at 20 USDT.
    sell_all = plan("2", "100", "0", params=RebalanceParams(target_ratio=D("0"), max_order_notional=D("20")))
    assert sell_all.quantity == D("10.00") and sell_all.notional_usdt == D("20.00")


def test_buy_never_spends_more_than_free_usdt_including_fees():
    # target 1.0: buy with all the USDT; the fee reserve must keep notional·(1+fee) ≤ free USDT.
    result = plan(
        "0.37", "0", "100", params=RebalanceParams(target_ratio=D("1"), max_order_notional=None, fee_rate=D("0.002"))
    )
    assert result.action == BUY and "free USDT balance after fees" in result.capped_by
    assert result.notional_usdt * D("1.002") <= D("100")
    assert (result.quantity + D("0.01")) * D("0.37") * D("1.002") > D("100")  # one more step would not fit


def test_insufficient_balance_after_caps_holds_with_a_clear_reason():
    # All-in target: delta 1.001 USDT passes the minimum, but after reserving the fee only
    # 1.99 QRL ≈ 0.995 USDT fits the free USDT — below the exchange's 1 USDT minimum.
    params = RebalanceParams(target_ratio=D("1"), threshold=D("0"), max_order_notional=None, fee_rate=D("0.002"))
    result = plan("0.5", "0", "1.001", params=params)
    assert result.action == HOLD
    assert result.reason.startswith(REASON_BUY + ", but the order after caps and rounding (1.99 QRL")
    assert "below the exchange minimum" in result.reason and "insufficient free balance" in result.reason
    assert result.quantity == 0 and result.notional_usdt == 0
    assert result.capped_by == ("free USDT balance after fees",)


@pytest.mark.parametrize("price", [None, "0", "-1"])
def test_missing_zero_or_negative_price_holds_with_reason(price):
    result = plan(price, "1000", "300")
    assert result.action == HOLD
    assert "no valid price" in result.reason
    assert result.qrl_value is None and result.total_value is None and result.current_ratio is None


def test_empty_account_holds():
    result = plan("0.5", "0", "0")
    assert result.action == HOLD and result.reason == "no free balances to rebalance"


def test_locked_funds_are_excluded_from_values_and_caps():
    result = plan("0.5", "100", "100", qrl_locked="900", usdt_locked="50")
    # Only free funds count: 50 + 100 = 150, ratio 1/3 → BUY, capped by nothing locked.
    assert result.total_value == D("150.0") and result.qrl_balance == D("100")
    assert result.action == BUY
    assert "locked funds excluded: 900 QRL, 50 USDT" in result.details
    sell = plan("0.5", "10", "0", qrl_locked="1000")
    assert sell.action == SELL and sell.quantity <= D("10")


def test_locked_funds_come_from_the_account_payload():
    account = {
        "balances": [
            {"asset": "QRL", "free": "10.5", "locked": "2"},
            {"asset": "USDT", "free": "0.000000000674", "locked": "0"},
        ]
    }
    balances = parse_balances(account, "QRL", "USDT")
    assert balances == Balances(D("10.5"), D("2"), D("0.000000000674"), D("0"))
    assert parse_balances({"balances": []}, "QRL", "USDT") == Balances(D(0), D(0), D(0), D(0))
    with pytest.raises(ValueError, match="'free' is not a number"):
        parse_balances({"balances": [{"asset": "QRL", "free": "abc", "locked": "0"}]}, "QRL", "USDT")
    with pytest.raises(ValueError, match="base_free is negative"):
        parse_balances({"balances": [{"asset": "QRL", "free": "-1", "locked": "0"}]}, "QRL", "USDT")


def test_symbol_rules_come_from_exchange_info_not_constants():
    rules = parse_symbol_rules(SIMULATED_EXCHANGE_INFO, "QRLUSDT")
    assert rules.qty_step == D("0.01") and rules.min_qty == D("0.1") and rules.min_notional == D("1")
    assert rules.market_orders_allowed and rules.trading
    market = {
        **SIMULATED_EXCHANGE_INFO["symbols"][0],
        "quoteAmountPrecisionMarket": "5",
        "maxQuoteAmountMarket": "1000",
    }
    market_rules = parse_symbol_rules({"symbols": [market]}, "QRLUSDT")
    assert (market_rules.min_notional, market_rules.max_notional) == (D("5"), D("1000"))  # we place MARKET orders
    with pytest.raises(ValueError, match="symbol not listed"):
        parse_symbol_rules(SIMULATED_EXCHANGE_INFO, "BTCUSDT")
    broken = {"symbols": [{k: v for k, v in SIMULATED_EXCHANGE_INFO["symbols"][0].items() if k != "orderTypes"}]}
    with pytest.raises(ValueError, match="'orderTypes' is missing"):
        parse_symbol_rules(broken, "QRLUSDT")


def test_invalid_parameters_are_rejected_by_name():
    with pytest.raises(ValueError, match="target_ratio"):
        RebalanceParams(target_ratio=D("1.5"))
    with pytest.raises(ValueError, match="threshold"):
        RebalanceParams(threshold=D("-0.1"))


def test_plan_json_has_the_published_fields():
    fields = plan("0.5", "1000", "300").to_json_dict()
    for name in SPEC_PLAN_FIELDS:
        assert name in fields
    assert fields["timestamp"] == "2026-11-22T07:45:00+00:00" and fields["quantity"] == 200.0
