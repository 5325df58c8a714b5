"""The offline exchange of the embedded default (`simulated`) and the paper account of `paper` mode.

* `simulated_price(at)` is a deterministic price path: a closed-form function of the time and a seed
  (slow and fast cycles plus hashed noise), so the same partition always gets the same price, no
  matter which partitions ran before, and no network is needed.
* `PaperAccount` keeps paper balances, fills and orders in a JSON file under QRL_HOME, so paper fills
  change the balances the next plan sees. Writes are atomic (temp file + rename) under a file lock,
  because two runs (a schedule tick and a manual launch) may fill at the same time.
* `PaperExchange` answers the same MEXC-shaped calls as `MexcClient`, from a price source (the
  simulated path, or MEXC's public endpoints in `paper` mode) and the paper account — so parsers,
  maths, guards and idempotency are exercised identically in every mode.

No Dagster imports here.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

from qrl_platform.treasury.mexc_client import MexcError, explain_error, parse_symbol_rules

SIMULATED_SYMBOL = "QRLUSDT"
SIMULATION_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)  # start of the quarter_hour partitions
PAPER_TAKER_COMMISSION_BPS = 10  # 0.1 %, reported like MEXC's account.takerCommission

# The simulated exchange's catalogue, in exactly the shape MEXC's exchangeInfo answers, so that the
# same parser reads the limits in every mode (the values are the simulation's, not MEXC's).
SIMULATED_EXCHANGE_INFO: dict[str, Any] = {
    "timezone": "CST",
    "serverTime": 0,
    "rateLimits": [],
    "exchangeFilters": [],
    "symbols": [
        {
            "symbol": SIMULATED_SYMBOL,
            "status": "1",
            "baseAsset": "QRL",
            "baseAssetPrecision": 2,
            "quoteAsset": "USDT",
            "quotePrecision": 4,
            "quoteAssetPrecision": 4,
            "baseCommissionPrecision": 2,
            "quoteCommissionPrecision": 4,
            "orderTypes": ["LIMIT", "MARKET", "LIMIT_MAKER"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "quoteAmountPrecision": "1",
            "baseSizePrecision": "0.1",
            "permissions": ["SPOT"],
            "filters": [],
            "maxQuoteAmount": "2000000",
            "makerCommission": "0",
            "takerCommission": "0.001",
            "tradeSideType": "1",
        }
    ],
}


def simulated_price(at: dt.datetime, *, seed: int = 7, base: Decimal = Decimal("0.5")) -> Decimal:
    """QRL/USDT at `at`: base · exp(monthly + weekly + daily cycles + hashed noise), 4 decimals."""
    seconds = (at.astimezone(dt.UTC) - SIMULATION_EPOCH).total_seconds()
    day = 86400.0
    phase = (seed % 97) / 97 * 2 * math.pi
    digest = hashlib.sha256(f"{seed}|{int(seconds)}".encode()).digest()
    noise = int.from_bytes(digest[:8], "big") / 2**64 * 2 - 1  # uniform in [-1, 1)
    log_move = (
        0.25 * math.sin(2 * math.pi * seconds / (30 * day) + phase)
        + 0.08 * math.sin(2 * math.pi * seconds / (7 * day) + 2 * phase)
        + 0.03 * math.sin(2 * math.pi * seconds / day + 3 * phase)
        + 0.01 * noise
    )
    return (base * Decimal(repr(math.exp(log_move)))).quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


class SimulatedMarket:
    """Public market data of the simulated exchange at one moment (the partition's end)."""

    def __init__(self, at: dt.datetime, *, seed: int = 7):
        self.at = at
        self.seed = seed

    def ticker_price(self, symbol: str) -> dict[str, Any]:
        self._check_symbol(symbol)
        return {"symbol": symbol, "price": f"{simulated_price(self.at, seed=self.seed):f}"}

    def exchange_info(self, symbol: str) -> dict[str, Any]:
        self._check_symbol(symbol)
        info = copy.deepcopy(SIMULATED_EXCHANGE_INFO)
        info["serverTime"] = int(self.at.timestamp() * 1000)
        return info

    @staticmethod
    def _check_symbol(symbol: str) -> None:
        if symbol != SIMULATED_SYMBOL:
            raise MexcError(f"simulated exchange: {explain_error(10007, 'symbol not support api')}", code=10007)


class PaperAccount:
    """Paper balances, fills and orders in one JSON file (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        *,
        symbol: str,
        base_asset: str,
        quote_asset: str,
        initial_base: Decimal,
        initial_quote: Decimal,
    ):
        self.path = Path(path)
        self.symbol = symbol
        self.base_asset = base_asset
        self.quote_asset = quote_asset
        self.initial_base = initial_base
        self.initial_quote = initial_quote

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"paper account {self.path}: not valid JSON ({exc}); fix or delete the file") from None

    def _write(self, state: Mapping[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.path)

    def _opened(self, opening_price: Decimal, opened_at: dt.datetime) -> dict[str, Any]:
        """A new account: the initial QRL enters as an opening buy at the opening price, so the cost
        basis is meaningful from the first partition on; it costs no USDT (it was a deposit)."""
        trades = []
        if self.initial_base > 0:
            trades.append(
                {
                    "symbol": self.symbol,
                    "id": "0",
                    "orderId": "opening-balance",
                    "orderListId": -1,
                    "price": f"{opening_price:f}",
                    "qty": f"{self.initial_base:f}",
                    "quoteQty": f"{opening_price * self.initial_base:f}",
                    "commission": "0",
                    "commissionAsset": self.quote_asset,
                    "time": int(opened_at.timestamp() * 1000),
                    "isBuyer": True,
                    "isMaker": False,
                    "isBestMatch": True,
                    "isSelfTrade": False,
                    "clientOrderId": None,
                }
            )
        return {
            "balances": {
                self.base_asset: {"free": f"{self.initial_base:f}", "locked": "0"},
                self.quote_asset: {"free": f"{self.initial_quote:f}", "locked": "0"},
            },
            "trades": trades,
            "orders": {},
            "next_id": 1,
        }

    def snapshot(self, *, opening_price: Decimal, opened_at: dt.datetime) -> dict[str, Any]:
        with self._locked():
            state = self._read()
            if state is None:
                state = self._opened(opening_price, opened_at)
                self._write(state)
            return state

    def fill_market_order(
        self,
        params: Mapping[str, str],
        *,
        symbol: str,
        price: Decimal,
        fee_rate: Decimal,
        at: dt.datetime,
        dry_run: bool,
    ) -> dict[str, Any]:
        """Fill a MARKET order at `price` with a taker fee in USDT, as MEXC would answer it.

        A repeated newClientOrderId returns the first order and changes nothing (idempotent).
        """
        side, order_type = params.get("side"), params.get("type")
        if order_type != "MARKET":
            raise MexcError(f"paper account: only MARKET orders are simulated, got {order_type!r}", code=None)
        try:
            qty = Decimal(params["quantity"])
        except (KeyError, ArithmeticError):
            raise MexcError("paper account: order quantity missing or not a number", code=30002) from None
        with self._locked():
            state = self._read()
            if state is None:
                raise ValueError(f"paper account {self.path} does not exist yet; read a snapshot first")
            coid = params.get("newClientOrderId") or ""
            if coid and coid in state["orders"]:
                return state["orders"][coid] if not dry_run else {}
            base = state["balances"][self.base_asset]
            quote = state["balances"][self.quote_asset]
            notional = qty * price
            fee = (notional * fee_rate).quantize(Decimal("0.00000001"))
            if side not in ("BUY", "SELL"):
                raise MexcError(f"paper order: side must be BUY or SELL, got {side!r}")
            if qty <= 0:
                raise MexcError(f"paper order: {explain_error(30002, 'quantity must be positive')}", code=30002)
            if side == "SELL" and qty > Decimal(base["free"]):
                raise MexcError(f"paper order: {explain_error(30005, 'Oversold')}", code=30005)
            if side == "BUY" and notional + fee > Decimal(quote["free"]):
                raise MexcError(f"paper order: {explain_error(30004, 'Insufficient position')}", code=30004)
            if dry_run:
                return {}
            if side == "SELL":
                base["free"] = f"{Decimal(base['free']) - qty:f}"
                quote["free"] = f"{Decimal(quote['free']) + notional - fee:f}"
            else:
                base["free"] = f"{Decimal(base['free']) + qty:f}"
                quote["free"] = f"{Decimal(quote['free']) - notional - fee:f}"
            number = state["next_id"]
            state["next_id"] = number + 1
            order_id = f"paper-order-{number}"
            state["trades"].append(
                {
                    "symbol": symbol,
                    "id": str(number),
                    "orderId": order_id,
                    "orderListId": -1,
                    "price": f"{price:f}",
                    "qty": f"{qty:f}",
                    "quoteQty": f"{notional:f}",
                    "commission": f"{fee:f}",
                    "commissionAsset": self.quote_asset,
                    "time": int(at.timestamp() * 1000),
                    "isBuyer": side == "BUY",
                    "isMaker": False,
                    "isBestMatch": True,
                    "isSelfTrade": False,
                    "clientOrderId": coid or None,
                }
            )
            order = {
                "symbol": symbol,
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": coid,
                "side": side,
                "type": "MARKET",
                "status": "FILLED",
                "executedQty": f"{qty:f}",
                "price": f"{price:f}",
                "transactTime": int(at.timestamp() * 1000),
            }
            if coid:
                state["orders"][coid] = order
            self._write(state)
            return order


class PaperExchange:
    """`SpotExchange` over a market data source and a paper account (modes `simulated` and `paper`)."""

    def __init__(self, *, mode: str, market, account: PaperAccount, at: dt.datetime, opening: dt.datetime):
        self.mode = mode
        self.market = market  # SimulatedMarket, or MexcClient for public endpoints
        self.account_store = account
        self.at = at  # when fills happen (the partition's end in simulated mode, now in paper mode)
        self.opening = opening  # when a new paper account is opened, and at what time its price is read

    def __repr__(self) -> str:
        return f"PaperExchange(mode={self.mode!r}, account={str(self.account_store.path)!r})"

    def close(self) -> None:
        if hasattr(self.market, "close"):
            self.market.close()

    def __enter__(self) -> PaperExchange:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _price(self, symbol: str) -> Decimal:
        from qrl_platform.treasury.mexc_client import parse_price

        price = parse_price(self.market.ticker_price(symbol), symbol)
        if price is None or price <= 0:
            raise MexcError(f"{self.mode} exchange: no valid {symbol} price to fill at ({price})")
        return price

    def _opening_price(self, symbol: str) -> Decimal:
        if isinstance(self.market, SimulatedMarket):
            return simulated_price(self.opening, seed=self.market.seed)
        return self._price(symbol)

    def _snapshot(self) -> dict[str, Any]:
        store = self.account_store
        if store.path.exists():  # the opening price is only needed (and fetched) for a new account
            return store.snapshot(opening_price=Decimal(0), opened_at=self.opening)
        return store.snapshot(opening_price=self._opening_price(store.symbol), opened_at=self.opening)

    def ticker_price(self, symbol: str) -> dict[str, Any]:
        return self.market.ticker_price(symbol)

    def exchange_info(self, symbol: str) -> dict[str, Any]:
        return self.market.exchange_info(symbol)

    def account(self) -> dict[str, Any]:
        state = self._snapshot()
        balances = [{"asset": asset, **amounts} for asset, amounts in state["balances"].items()]
        return {
            "makerCommission": 0,
            "takerCommission": PAPER_TAKER_COMMISSION_BPS,
            "canTrade": True,
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
        }

    def my_trades(
        self, symbol: str, *, start_time: int | None = None, from_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        trades = [trade for trade in self._snapshot()["trades"] if trade["symbol"] == symbol]
        if start_time is not None:
            trades = [trade for trade in trades if trade["time"] >= start_time]
        if from_id is not None:
            trades = [trade for trade in trades if int(trade["id"]) >= int(from_id)]
        return trades[:limit]

    def _fill(self, params: Mapping[str, str], *, dry_run: bool) -> dict[str, Any]:
        symbol = params.get("symbol", "")
        rules = parse_symbol_rules(self.market.exchange_info(symbol), symbol)
        if not rules.trading:
            raise MexcError(f"{self.mode} exchange: {explain_error(30016, 'symbol is not trading')}", code=30016)
        if params.get("type") == "MARKET" and not rules.market_orders_allowed:
            raise MexcError(f"{self.mode} exchange: {explain_error(30019, 'market order disabled')}", code=30019)
        self._snapshot()  # opens the account on first use
        return self.account_store.fill_market_order(
            params,
            symbol=symbol,
            price=self._price(symbol),
            fee_rate=Decimal(PAPER_TAKER_COMMISSION_BPS) / 10000,
            at=self.at,
            dry_run=dry_run,
        )

    def test_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self._fill(params, dry_run=True)

    def place_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        return self._fill(params, dry_run=False)

    def query_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        return self._snapshot()["orders"].get(client_order_id)
