"""How a strategy's signals become positions in the backtest, and the Taiwan trading costs.

A strategy YAML may carry a `backtest:` mapping; every field is optional and defaults to the rule
below. The costs are the Taiwan retail schedule: commission 0.1425 % of the traded value per side
(times the broker's discount, e.g. 0.6), at least NT$20 per order, rounded down to whole dollars; the
securities transaction tax only on sells, 0.3 % for stocks and 0.1 % for ETFs, rounded down too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

COMMISSION_RATE = 0.001425
MIN_COMMISSION_TWD = 20.0
STOCK_TAX_RATE = 0.003
ETF_TAX_RATE = 0.001
BOARD_LOT = 1000


@dataclass(frozen=True)
class BacktestRule:
    """Default: an equal-weight BUY basket entered at the next open, each position held for the strategy's
    `horizon_days` (or until a SELL signal), at most 10 positions, NT$10 M of starting capital."""

    max_positions: int = 10
    capital_twd: float = 10_000_000.0
    hold_days: int | None = None  # None: the strategy's horizon_days
    broker_discount: float = 1.0  # multiplies the 0.1425 % commission (0.6 = a 40 % discount)
    odd_lots: bool = False  # trade single shares instead of 1,000-share lots
    buy_full_cash_delivery: bool = False  # full-cash-delivery (全額交割) stocks are not bought by default

    @property
    def lot_size(self) -> int:
        return 1 if self.odd_lots else BOARD_LOT

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TYPES = {
    "max_positions": int,
    "capital_twd": (int, float),
    "hold_days": int,
    "broker_discount": (int, float),
    "odd_lots": bool,
    "buy_full_cash_delivery": bool,
}


def parse_backtest_rule(raw: Any) -> tuple[BacktestRule, list[tuple[str, str]]]:
    """(rule, errors as (field, message)) from a YAML `backtest:` mapping; None gives the default."""
    if raw is None:
        return BacktestRule(), []
    if not isinstance(raw, Mapping):
        return BacktestRule(), [("backtest", f"must be a mapping, got {raw!r}")]
    errors: list[tuple[str, str]] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        expected = _TYPES.get(key)
        if expected is None:
            errors.append((f"backtest.{key}", f"unknown field; known: {sorted(_TYPES)}"))
        elif isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
            errors.append((f"backtest.{key}", f"has the wrong type: {value!r}"))
        else:
            values[key] = value
    limits = {
        "max_positions": lambda v: 1 <= v <= 500,
        "capital_twd": lambda v: v > 0,
        "hold_days": lambda v: 1 <= v <= 250,
        "broker_discount": lambda v: 0 < v <= 1,
    }
    for key, ok in limits.items():
        if key in values and not ok(values[key]):
            errors.append((f"backtest.{key}", f"is out of range: {values.pop(key)!r}"))
    return BacktestRule(**values), errors


def commission(value: float, broker_discount: float = 1.0) -> float:
    """Broker commission of one order of `value` TWD: 0.1425 % × discount, rounded down, at least NT$20."""
    if value <= 0:
        return 0.0
    return max(MIN_COMMISSION_TWD, float(math.floor(value * COMMISSION_RATE * broker_discount)))


def transaction_tax(value: float, is_etf: bool) -> float:
    """Securities transaction tax of a SELL of `value` TWD (buys pay none), rounded down."""
    return float(math.floor(value * (ETF_TAX_RATE if is_etf else STOCK_TAX_RATE)))
