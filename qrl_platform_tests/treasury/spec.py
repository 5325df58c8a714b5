"""What the specification says a published rebalance plan holds, written out here (not imported from the code under
test) so the tests hold the code to the spec."""

SPEC_PLAN_FIELDS = (
    "timestamp",
    "symbol",
    "price",
    "qrl_balance",
    "usdt_balance",
    "qrl_value",
    "total_value",
    "target_ratio",
    "current_ratio",
    "action",
    "quantity",
    "notional_usdt",
    "reason",
)
