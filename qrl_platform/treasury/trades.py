"""One fill of the account, as the cost basis and the MEXC client both see it (kept apart from both so
neither imports the other's module for it)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Trade:
    trade_id: str
    symbol: str
    order_id: str | None
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str | None
    time_ms: int
    is_buyer: bool
    is_maker: bool | None = None

    @property
    def sort_key(self) -> tuple[int, int, str]:
        # MEXC ids are numeric strings: order them numerically, with the time first.
        return (self.time_ms, len(self.trade_id), self.trade_id)
