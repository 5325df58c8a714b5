"""A local fake of MEXC Spot v3 that checks requests the way MEXC does.

Runs stdlib `http.server` in a thread on 127.0.0.1 (free port). Signed endpoints verify the
`X-MEXC-APIKEY` header, the HMAC-SHA256 `signature` over the exact query string received (the raw
string minus `&signature=…`, plus the body if any) and that `timestamp` lies within `recvWindow`
(accepted when timestamp < serverTime + 1000 and serverTime − timestamp ≤ recvWindow < 60000).
Payload shapes follow /work/shared/reference/exchange-payloads.md.

Fault injection: `inject(path, kind, times=1, …)` with kind
* "429" — HTTP 429 with `Retry-After` (seconds);
* "500" — HTTP 5xx with an HTML body;
* "timeout" — sleep `seconds` before answering (longer than the client's timeout);
* "malformed" — HTTP 200 with truncated JSON;
* "code" — HTTP 400 `{"code": code, "msg": msg}` (e.g. 700002, 30005);
* "500_after" — (POST /api/v3/order) place the order, then answer 500: the outcome-unknown case;
  with `outage=N` the next N requests of any kind answer 503 too, so the client's lookup fails.
Pass `method="POST"` to target order placement only (GET /api/v3/order is the order lookup).
`storm(rate, kinds, seed)` draws a fault for each request instead, at random with probability `rate`
(a kind may name the `path`/`method` it applies to); `faults_served` counts what was served.
Clock skew: `clock_offset_ms` moves the fake's clock (GET /api/v3/time and the recvWindow check), so
a client that never resyncs gets 700003.
`allow_duplicate_client_ids = True` accepts a repeated `newClientOrderId` (the real behaviour is
undocumented), so a client that re-places an order shows up in `placed` as a duplicate instead of
being saved by the fake.
`market_orders_enabled = False` removes MARKET from exchangeInfo's orderTypes and makes MARKET
orders answer 30019, as MEXC does for symbols with market orders disabled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from qrl_platform_tests.local_http import LocalHttpServer, Reply, Request

SIGNED_PATHS = {"/api/v3/account", "/api/v3/myTrades", "/api/v3/order", "/api/v3/order/test"}
TAKER_COMMISSION_BPS = 20  # as in the reference account payload


class FakeMexc(LocalHttpServer):
    def __init__(self, *, api_key: str = "fake-api-key", api_secret: str = "fake-api-secret", symbol: str = "QRLUSDT"):
        super().__init__()
        self.api_key = api_key
        self.api_secret = api_secret
        self.symbol = symbol
        self.price = Decimal("0.5000")
        self.balances: dict[str, dict[str, Decimal]] = {
            "QRL": {"free": Decimal("1000"), "locked": Decimal("0")},
            "USDT": {"free": Decimal("300"), "locked": Decimal("0")},
            "MX": {"free": Decimal("0"), "locked": Decimal("0")},
        }
        self.trades: list[dict[str, Any]] = []
        self.orders: dict[str, dict[str, Any]] = {}  # by client order id
        self.test_orders: list[dict[str, str]] = []
        self.market_orders_enabled = True
        self.symbol_status = "1"
        self.clock_offset_ms = 0
        self.requests: list[dict[str, Any]] = []
        self.placed: list[dict[str, Any]] = []  # every order placed, duplicates included
        self.allow_duplicate_client_ids = False
        self.faults_served: dict[str, int] = defaultdict(int)
        self._outage = 0  # requests still to answer 503 after a "500_after" with an outage
        self._storm: tuple[float, list[dict[str, Any]], random.Random, dict[str, float]] | None = None
        self._faults: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._next_id = 1000

    # ---- control -------------------------------------------------------------------------------

    @property
    def url(self) -> str:  # the base URL, as the MEXC client takes it
        return self.base_url

    def inject(self, path: str, kind: str, *, times: int = 1, method: str | None = None, **options: Any) -> None:
        """Queue `times` faults for `path` (and `method`, when given; GET and POST share /api/v3/order)."""
        for _ in range(times):
            self._faults[path].append({"kind": kind, "method": method, **options})

    def storm(
        self, rate: float, kinds: list[dict[str, Any]], *, seed: int = 0, rates: dict[str, float] | None = None
    ) -> None:
        """From now on each request draws a fault with probability `rate`, uniformly among the kinds that
        apply to it (`{"kind": "500_after", "path": "/api/v3/order", "method": "POST"}`); `rates` sets
        another probability per "METHOD /path"; rate 0 stops."""
        self._storm = (rate, kinds, random.Random(seed), dict(rates or {})) if rate > 0 else None

    def _take_fault(self, method: str, path: str) -> dict[str, Any] | None:
        with self._lock:
            if self._outage > 0:
                self._outage -= 1
                self.faults_served["outage"] += 1
                return {"kind": "500", "status": 503}
            for index, fault in enumerate(self._faults.get(path, [])):
                if fault["method"] in (None, method):
                    fault = self._faults[path].pop(index)
                    self.faults_served[fault["kind"]] += 1
                    return fault
            if self._storm is not None:
                rate, kinds, rng, rates = self._storm
                applicable = [k for k in kinds if k.get("path", path) == path and k.get("method", method) == method]
                if applicable and rng.random() < rates.get(f"{method} {path}", rate):
                    fault = dict(rng.choice(applicable))
                    self.faults_served[fault["kind"]] += 1
                    return fault
        return None

    def add_trade(
        self,
        *,
        price: str,
        qty: str,
        is_buyer: bool,
        time_ms: int,
        commission: str = "0",
        commission_asset: str = "USDT",
        trade_id: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            trade = self._trade(
                Decimal(price),
                Decimal(qty),
                is_buyer,
                time_ms,
                Decimal(commission),
                commission_asset,
                order_id=f"o{self._next_id}",
                trade_id=trade_id,
            )
        return trade

    def calls(self, path: str) -> list[dict[str, Any]]:
        return [request for request in self.requests if request["path"] == path]

    # ---- state helpers -------------------------------------------------------------------------

    def _trade(
        self, price, qty, is_buyer, time_ms, commission, commission_asset, *, order_id, trade_id=None, coid=None
    ):
        self._next_id += 1
        trade = {
            "symbol": self.symbol,
            "id": trade_id or str(self._next_id),
            "orderId": order_id,
            "orderListId": -1,
            "price": f"{price:f}",
            "qty": f"{qty:f}",
            "quoteQty": f"{price * qty:f}",
            "commission": f"{commission:f}",
            "commissionAsset": commission_asset,
            "time": time_ms,
            "isBuyer": is_buyer,
            "isMaker": False,
            "isBestMatch": True,
            "isSelfTrade": False,
            "clientOrderId": coid,
        }
        self.trades.append(trade)
        return trade

    def symbol_info(self) -> dict[str, Any]:
        order_types = ["LIMIT", "MARKET", "LIMIT_MAKER"] if self.market_orders_enabled else ["LIMIT", "LIMIT_MAKER"]
        return {
            "symbol": self.symbol,
            "status": self.symbol_status,
            "baseAsset": "QRL",
            "baseAssetPrecision": 2,
            "quoteAsset": "USDT",
            "quotePrecision": 4,
            "quoteAssetPrecision": 4,
            "baseCommissionPrecision": 2,
            "quoteCommissionPrecision": 4,
            "orderTypes": order_types,
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "quoteAmountPrecision": "1.000000000000000000000000000000",
            "baseSizePrecision": "0.1",
            "permissions": ["SPOT"],
            "filters": [],
            "maxQuoteAmount": "2000000.000000000000000000000000000000",
            "makerCommission": "0",
            "takerCommission": "0.002",
            "tradeSideType": "1",
            "fullName": "Quantum Resistant Ledger",
        }

    def server_time_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    def answer(self, request: Request) -> Reply:
        fake = self
        method, path, raw_query = request.method, request.path, request.raw_query
        body = request.body.decode()
        fake.requests.append(
            {
                "method": method,
                "path": path,
                "query": raw_query,
                "body": body,
                "api_key": request.headers.get("X-MEXC-APIKEY"),
            }
        )

        fault = fake._take_fault(method, path)
        after_fault = None
        if fault:
            kind = fault["kind"]
            if kind == "429":
                return _reply(
                    429, {"code": 429, "msg": "Too Many Requests"}, {"Retry-After": str(fault.get("retry_after", 1))}
                )
            if kind == "500":
                return _reply(fault.get("status", 503), None, raw="<html><body>503 Service Unavailable</body></html>")
            if kind == "timeout":
                time.sleep(fault.get("seconds", 1.0))
            if kind == "malformed":
                return _reply(200, None, raw='{"symbol": "QRLUSDT", "price": ')
            if kind == "code":
                return _reply(400, {"code": fault["code"], "msg": fault.get("msg", "injected error")})
            if kind == "500_after":
                after_fault = fault

        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        if path in SIGNED_PATHS:
            problem = self._verify(request.headers, raw_query, body, params)
            if problem:
                return _reply(*problem)
        try:
            status, payload, headers = self._route(method, path, params)
        except Exception as exc:  # a bug in the fake must be visible, not a hang
            status, payload, headers = 500, {"code": -1, "msg": f"fake server error: {exc!r}"}, {}
        if after_fault:
            with fake._lock:
                fake._outage = int(after_fault.get("outage", 0))
            return _reply(503, None, raw="<html>upstream timeout</html>")
        return _reply(status, payload, headers)

    def _verify(self, headers, raw_query: str, body: str, params: dict[str, str]):
        fake = self
        if headers.get("X-MEXC-APIKEY") != fake.api_key:
            return _error(10072, "Api key info invalid")
        pieces = raw_query.split("&") if raw_query else []
        signatures = [piece for piece in pieces if piece.startswith("signature=")]
        if len(signatures) != 1:
            return _error(700002, "Signature for this request is not valid.")
        signed_part = "&".join(piece for piece in pieces if not piece.startswith("signature=")) + body
        expected = hmac.new(fake.api_secret.encode(), signed_part.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signatures[0][len("signature=") :]):
            return _error(700002, "Signature for this request is not valid.")
        try:
            timestamp = int(params["timestamp"])
            recv_window = int(params.get("recvWindow", "5000"))
        except (KeyError, ValueError):
            return _error(700003, "Timestamp for this request is outside of the recvWindow.")
        if recv_window >= 60000:
            return _error(700003, "recvWindow must be less than 60000")
        server_time = fake.server_time_ms()
        if not (timestamp < server_time + 1000 and server_time - timestamp <= recv_window):
            return _error(700003, "Timestamp for this request is outside of the recvWindow.")
        return None

    def _route(self, method: str, path: str, params: dict[str, str]):
        fake = self
        if path == "/api/v3/time" and method == "GET":
            return 200, {"serverTime": fake.server_time_ms()}, {}
        if path == "/api/v3/ticker/price" and method == "GET":
            if params.get("symbol") != fake.symbol:
                return _error(-1121, "Invalid symbol.")
            return 200, {"symbol": fake.symbol, "price": f"{fake.price:f}"}, {}
        if path == "/api/v3/exchangeInfo" and method == "GET":
            return (
                200,
                {
                    "timezone": "CST",
                    "serverTime": fake.server_time_ms(),
                    "rateLimits": [],
                    "exchangeFilters": [],
                    "symbols": [fake.symbol_info()],
                },
                {},
            )
        if path == "/api/v3/account" and method == "GET":
            balances = [
                {"asset": asset, "free": f"{amounts['free']:f}", "locked": f"{amounts['locked']:f}"}
                for asset, amounts in fake.balances.items()
            ]
            return (
                200,
                {
                    "makerCommission": 0,
                    "takerCommission": TAKER_COMMISSION_BPS,
                    "buyerCommission": 0,
                    "sellerCommission": 0,
                    "canTrade": True,
                    "canWithdraw": True,
                    "canDeposit": True,
                    "updateTime": None,
                    "accountType": "SPOT",
                    "balances": balances,
                    "permissions": ["SPOT"],
                },
                {},
            )
        if path == "/api/v3/myTrades" and method == "GET":
            return 200, self._my_trades(params), {}
        if path == "/api/v3/order/test" and method == "POST":
            problem = self._validate_order(params)
            if problem:
                return problem
            fake.test_orders.append(params)
            return 200, {}, {}
        if path == "/api/v3/order" and method == "POST":
            return self._place(params)
        if path == "/api/v3/order" and method == "GET":
            order = fake.orders.get(params.get("origClientOrderId", ""))
            if order is None:
                return _error(-2013, "Order does not exist.")
            return 200, order, {}
        return _error(-1, f"fake MEXC: no route {method} {path}", status=404)

    def _my_trades(self, params: dict[str, str]) -> list[dict[str, Any]]:
        fake = self
        rows = [trade for trade in fake.trades if trade["symbol"] == params.get("symbol")]
        if "startTime" in params:
            rows = [trade for trade in rows if trade["time"] >= int(params["startTime"])]
        if "endTime" in params:
            rows = [trade for trade in rows if trade["time"] <= int(params["endTime"])]
        if "fromId" in params:
            rows = [trade for trade in rows if int(trade["id"]) >= int(params["fromId"])]
        rows.sort(key=lambda trade: (trade["time"], int(trade["id"])))
        limit = min(int(params.get("limit", "100")), 100)
        return rows[:limit]

    def _validate_order(self, params: dict[str, str]):
        fake = self
        if params.get("symbol") != fake.symbol:
            return _error(10007, "symbol not support api")
        if fake.symbol_status != "1":
            return _error(30016, "trading disabled")
        if params.get("type") == "MARKET" and not fake.market_orders_enabled:
            return _error(30019, "market order is disabled")
        try:
            qty = Decimal(params["quantity"])
        except (KeyError, ArithmeticError):
            return _error(-1102, "quantity is required")
        if qty != qty.quantize(Decimal("0.01")):
            return _error(400, "quantity scale is invalid")
        notional = qty * fake.price
        if qty < Decimal("0.1") or notional < 1:
            return _error(30002, "minimum transaction volume cannot be less than :1USDT")
        if params.get("side") == "SELL" and qty > fake.balances["QRL"]["free"]:
            return _error(30005, "Oversold")
        if (
            params.get("side") == "BUY"
            and notional * (1 + Decimal(TAKER_COMMISSION_BPS) / 10000) > fake.balances["USDT"]["free"]
        ):
            return _error(30004, "Insufficient position")
        return None

    def _place(self, params: dict[str, str]):
        fake = self
        coid = params.get("newClientOrderId") or ""
        with fake._lock:
            if coid and coid in fake.orders and not fake.allow_duplicate_client_ids:
                # The real code for a repeated client order id is not documented; the fake refuses it.
                return _error(-2010, "Duplicate newClientOrderId")
            problem = self._validate_order(params)
            if problem:
                return problem
            qty = Decimal(params["quantity"])
            notional = qty * fake.price
            fee = notional * Decimal(TAKER_COMMISSION_BPS) / 10000
            if params["side"] == "SELL":
                fake.balances["QRL"]["free"] -= qty
                fake.balances["USDT"]["free"] += notional - fee
            else:
                fake.balances["QRL"]["free"] += qty
                fake.balances["USDT"]["free"] -= notional + fee
            fake._next_id += 1
            order_id = f"C02__{fake._next_id}"
            fake._trade(
                fake.price,
                qty,
                params["side"] == "BUY",
                fake.server_time_ms(),
                fee,
                "USDT",
                order_id=order_id,
                coid=coid or None,
            )
            order = {
                "symbol": fake.symbol,
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": coid,
                "price": f"{fake.price:f}",
                "origQty": f"{qty:f}",
                "executedQty": f"{qty:f}",
                "status": "FILLED",
                "type": "MARKET",
                "side": params["side"],
            }
            if coid:
                fake.orders[coid] = order
            fake.placed.append({**order, "notional": notional})
        return 200, {"symbol": fake.symbol, "orderId": order_id, "orderListId": -1}, {}


def _reply(status: int, body: Any, headers: dict[str, str] | None = None, raw: str | None = None) -> Reply:
    payload = raw if raw is not None else json.dumps(body)
    return Reply(status, payload, dict(headers or {}), "text/html" if raw is not None else "application/json")


def _error(code: int, msg: str, status: int = 400) -> tuple[int, Any, dict[str, str]]:
    return status, {"code": code, "msg": msg}, {}
