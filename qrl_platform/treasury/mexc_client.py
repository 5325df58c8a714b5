"""A thin signed client for MEXC Spot v3, and the parsers that turn its payloads into domain values.

Why a thin client and not ccxt: we need seven endpoints of one exchange (account, myTrades,
ticker/price, exchangeInfo, order/test, order, time). ccxt's `mexc.load_markets` also fetches the *futures*
catalogue (`/api/v1/contract/detail`), which an offline test server would have to imitate or route
around; ccxt also decides itself what string it signs and how it retries, and those are exactly the
parts we must control and test here (HMAC over the exact query string sent, honouring Retry-After,
never retrying an order placement blindly because a 5xx leaves its outcome unknown, resyncing the
clock once on 700003). About 300 lines
of httpx are easier to read, to test against a local fake server, and add no dependency.

Nothing in this module imports Dagster. Secrets live only in private attributes of `MexcClient`, are
never formatted into messages or reprs, and the API key travels only in the `X-MEXC-APIKEY` header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx

from qrl_platform.http_retry import retry_after_seconds
from qrl_platform.treasury.rebalance import Balances, SymbolRules
from qrl_platform.treasury.trades import Trade

DEFAULT_BASE_URL = "https://api.mexc.com"

# What each MEXC error code means for whoever reads the failed run, and what to do about it.
ERROR_EXPLANATIONS: dict[int, str] = {
    -2013: "order does not exist",
    700001: "API key rejected: check MEXC_API_KEY",
    10072: "API key rejected: check MEXC_API_KEY",
    700002: "signature rejected: check MEXC_API_SECRET (the signature must cover the exact query string sent)",
    700003: "timestamp outside recvWindow: the host clock is off from MEXC's, or recvWindow is too small",
    700006: "this IP address is not whitelisted for the API key",
    700007: "the API key has no permission for this endpoint (enable spot reading/trading for the key)",
    10101: "insufficient balance for the order",
    30004: "insufficient balance for the order",
    30002: "order below the symbol's minimum quantity or order value",
    30005: "oversold: the sell quantity exceeds the free balance",
    30016: "trading is disabled for this symbol",
    30019: "market orders are disabled for this symbol",
    30051: "market orders are disabled for this symbol",
    10007: "symbol not supported by the API",
}
ORDER_NOT_FOUND = -2013
TIMESTAMP_OUTSIDE_RECV_WINDOW = 700003


class MexcError(Exception):
    """A request to MEXC failed; the message says which endpoint, why, and what to check."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None, endpoint: str = ""):
        super().__init__(message)
        self.code = code
        self.http_status = http_status
        self.endpoint = endpoint


class MexcOutcomeUnknown(MexcError):
    """An order placement timed out or got a 5xx: the order may or may not exist on the exchange."""


def explain_error(code: int | None, msg: str) -> str:
    explanation = ERROR_EXPLANATIONS.get(code) if code is not None else None
    detail = f"[code {code}: {msg}]" if code is not None else f"[{msg}]"
    return f"{explanation} {detail}" if explanation else f"MEXC error {detail}"


@dataclass(frozen=True)
class ClientSettings:
    """Transport behaviour; tests shrink the waits so fault injection stays fast."""

    base_url: str = DEFAULT_BASE_URL
    recv_window_ms: int = 5000
    timeout_seconds: float = 10.0
    max_retries: int = 3  # retries after the first attempt, for 429 / 5xx / timeouts on safe requests
    backoff_seconds: float = 0.5  # first backoff; doubles each retry
    max_backoff_seconds: float = 30.0
    max_retry_after_seconds: float = 60.0  # a longer Retry-After fails clearly instead of stalling the run
    min_request_interval_seconds: float = 0.1  # client-side rate limit: at most ~10 requests/s

    def __post_init__(self) -> None:
        if not 0 < self.recv_window_ms < 60000:
            raise ValueError(f"recv_window_ms must be in (0, 60000), got {self.recv_window_ms}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")


class SpotExchange(Protocol):
    """What the QRL assets need from an exchange; MEXC-shaped payloads in and out.

    `MexcClient` talks to MEXC; `simulated.PaperExchange` answers the same calls from a simulated or
    live price and a paper account, so the parsers and the maths are shared by every mode.
    """

    mode: str

    def account(self) -> dict[str, Any]: ...

    def my_trades(
        self, symbol: str, *, start_time: int | None = None, from_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]: ...

    def ticker_price(self, symbol: str) -> dict[str, Any]: ...

    def exchange_info(self, symbol: str) -> dict[str, Any]: ...

    def test_order(self, params: Mapping[str, str]) -> dict[str, Any]: ...

    def place_order(self, params: Mapping[str, str]) -> dict[str, Any]: ...

    def query_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


class _RateLimiter:
    """Spaces requests at least `interval` seconds apart across threads."""

    def __init__(self, interval: float, clock: Callable[[], float], sleep: Callable[[float], None]):
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_at = 0.0

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next_at:
                self._sleep(self._next_at - now)
                now = self._next_at
            self._next_at = now + self._interval


class MexcClient:
    """Signed MEXC Spot v3 over httpx: signing, rate limiting, retries with backoff, error mapping."""

    mode = "live"

    def __init__(
        self,
        settings: ClientSettings,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.settings = settings
        self._api_key = api_key or ""
        self._api_secret = api_secret or ""
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._limiter = _RateLimiter(settings.min_request_interval_seconds, time.monotonic, sleep)
        self._http = httpx.Client(timeout=settings.timeout_seconds, transport=transport)
        # MEXC's clock minus ours, in ms; learnt from GET /api/v3/time after a 700003 (see _request).
        self.clock_offset_ms = 0
        self.clock_resyncs = 0

    def __repr__(self) -> str:  # never show the credentials
        return f"MexcClient(base_url={self.settings.base_url!r}, signed={bool(self._api_key)})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MexcClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- endpoints -------------------------------------------------------------------------------

    def server_time(self) -> int:
        """MEXC's clock in epoch milliseconds (GET /api/v3/time, unsigned)."""
        body = self._send("GET", "/api/v3/time", [])
        if not isinstance(body, Mapping):
            raise MexcError("MEXC GET /api/v3/time: expected an object with 'serverTime'", endpoint="/api/v3/time")
        return int(decimal_field(body, "serverTime", where="time"))

    def ticker_price(self, symbol: str) -> dict[str, Any]:
        return self._request("GET", "/api/v3/ticker/price", [("symbol", symbol)])

    def exchange_info(self, symbol: str) -> dict[str, Any]:
        return self._request("GET", "/api/v3/exchangeInfo", [("symbol", symbol)])

    def account(self) -> dict[str, Any]:
        return self._request("GET", "/api/v3/account", [], signed=True)

    def my_trades(
        self, symbol: str, *, start_time: int | None = None, from_id: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        params: list[tuple[str, Any]] = [("symbol", symbol)]
        if start_time is not None:
            params.append(("startTime", int(start_time)))
        if from_id is not None:
            params.append(("fromId", from_id))
        params.append(("limit", int(limit)))
        body = self._request("GET", "/api/v3/myTrades", params, signed=True)
        if not isinstance(body, list):
            raise MexcError(
                f"MEXC GET /api/v3/myTrades: expected a JSON list, got {type(body).__name__}",
                endpoint="/api/v3/myTrades",
            )
        return body

    def test_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        # order/test places nothing, so it is as safe to retry as a read.
        return self._request("POST", "/api/v3/order/test", list(params.items()), signed=True)

    def place_order(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Place an order; a timeout or 5xx is reconciled by looking the client order id up.

        The request is never simply repeated: after a 5xx the order may exist. We ask the exchange
        for `newClientOrderId`; if it is there the placement succeeded, otherwise the outcome stays
        unknown and the caller records that (the next run looks the id up again before placing).
        """
        try:
            return self._request("POST", "/api/v3/order", list(params.items()), signed=True, idempotent=False)
        except MexcOutcomeUnknown as unknown:
            client_order_id = params.get("newClientOrderId")
            if not client_order_id:
                raise
            for attempt in range(self.settings.max_retries + 1):
                self._sleep(self._backoff(attempt))
                try:
                    found = self.query_order(params["symbol"], client_order_id)
                except MexcError:
                    continue
                if found is not None:
                    return found
            raise MexcOutcomeUnknown(
                f"{unknown} — and order {client_order_id} was not found afterwards; check the exchange before "
                "retrying (a retried run looks the id up again and will not place a second order if it exists)",
                http_status=unknown.http_status,
                endpoint=unknown.endpoint,
            ) from unknown

    def query_order(self, symbol: str, client_order_id: str) -> dict[str, Any] | None:
        try:
            return self._request(
                "GET", "/api/v3/order", [("symbol", symbol), ("origClientOrderId", client_order_id)], signed=True
            )
        except MexcError as exc:
            if exc.code == ORDER_NOT_FOUND:
                return None
            raise

    # ---- transport -------------------------------------------------------------------------------

    def _signed_query(self, params: Sequence[tuple[str, Any]]) -> str:
        if not (self._api_key and self._api_secret):
            raise MexcError("signed MEXC endpoints need MEXC_API_KEY and MEXC_API_SECRET in the environment")
        # A fresh timestamp per attempt: a retried request must still fall inside recvWindow.
        timestamp = int(self._wall_clock() * 1000) + self.clock_offset_ms
        params = [*params, ("recvWindow", self.settings.recv_window_ms), ("timestamp", timestamp)]
        query = urlencode(params, quote_via=quote)
        signature = hmac.new(self._api_secret.encode(), query.encode(), hashlib.sha256).hexdigest()
        return f"{query}&signature={signature}"

    def _backoff(self, attempt: int) -> float:
        return min(self.settings.backoff_seconds * (2**attempt), self.settings.max_backoff_seconds)

    def _wait_before_retry(self, attempt: int, attempts: int, seconds: float) -> None:
        if attempt + 1 < attempts:  # no point waiting after the last attempt
            self._sleep(seconds)

    def resync_clock(self) -> int:
        """Measure MEXC's clock against ours and sign later timestamps with the difference.

        The offset is taken against the midpoint of the request, so a slow answer halves its error.
        """
        sent = self._wall_clock()
        server_ms = self.server_time()
        received = self._wall_clock()
        self.clock_offset_ms = server_ms - int((sent + received) / 2 * 1000)
        self.clock_resyncs += 1
        return self.clock_offset_ms

    def _request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, Any]],
        *,
        signed: bool = False,
        idempotent: bool = True,
    ) -> Any:
        """`_send`, plus: a signed request refused with 700003 resyncs the clock once and is sent once more.

        Retrying even an order placement is safe here: 700003 is MEXC refusing the request before it
        looks at the order, so nothing was placed. A second 700003 is reported as it is.
        """
        try:
            return self._send(method, path, params, signed=signed, idempotent=idempotent)
        except MexcError as exc:
            if not (signed and exc.code == TIMESTAMP_OUTSIDE_RECV_WINDOW):
                raise
            refused = exc
        try:
            offset = self.resync_clock()
        except MexcError as exc:
            raise MexcError(
                f"{refused}; resyncing the clock against GET /api/v3/time failed too: {exc}",
                code=refused.code,
                http_status=refused.http_status,
                endpoint=refused.endpoint,
            ) from exc
        try:
            return self._send(method, path, params, signed=signed, idempotent=idempotent)
        except MexcError as exc:
            if exc.code == TIMESTAMP_OUTSIDE_RECV_WINDOW:
                raise MexcError(
                    f"{exc} (again after resyncing the clock: MEXC is {offset} ms ahead of this host)",
                    code=exc.code,
                    http_status=exc.http_status,
                    endpoint=exc.endpoint,
                ) from exc
            raise

    def _send(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, Any]],
        *,
        signed: bool = False,
        idempotent: bool = True,
    ) -> Any:
        """One request with bounded retries for 429 (honouring Retry-After), 5xx and timeouts."""
        endpoint = f"{method} {path}"
        attempts = self.settings.max_retries + 1
        last_problem = ""
        for attempt in range(attempts):
            query = self._signed_query(params) if signed else urlencode(list(params), quote_via=quote)
            url = f"{self.settings.base_url.rstrip('/')}{path}" + (f"?{query}" if query else "")
            headers = {"X-MEXC-APIKEY": self._api_key} if signed else {}
            if method == "POST":
                headers["Content-Type"] = "application/json"
            self._limiter.wait()
            try:
                response = self._http.request(method, url, headers=headers)
            except httpx.TransportError as exc:
                timed_out = isinstance(exc, httpx.TimeoutException)
                last_problem = (
                    f"timed out after {self.settings.timeout_seconds:g}s"
                    if timed_out
                    else f"connection failed ({type(exc).__name__})"
                )
                # A connection that was never made sent nothing, so even an order may be retried.
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                if not idempotent and not never_sent:
                    raise MexcOutcomeUnknown(
                        f"MEXC {endpoint}: {last_problem}; the order may exist", endpoint=path
                    ) from None
                self._wait_before_retry(attempt, attempts, self._backoff(attempt))
                continue

            status = response.status_code
            if status == 429:
                wait = _retry_after_seconds(response) or self._backoff(attempt)
                last_problem = f"rate limited (HTTP 429, Retry-After {response.headers.get('Retry-After', '-')})"
                if wait > self.settings.max_retry_after_seconds:
                    raise MexcError(
                        f"MEXC {endpoint}: {last_problem}; waiting {wait:g}s exceeds the "
                        f"{self.settings.max_retry_after_seconds:g}s limit — MEXC bans clients that keep calling",
                        http_status=429,
                        endpoint=path,
                    )
                self._wait_before_retry(attempt, attempts, wait)
                continue
            if status >= 500:
                last_problem = f"server error HTTP {status}"
                if not idempotent:
                    raise MexcOutcomeUnknown(
                        f"MEXC {endpoint}: {last_problem}; the order may exist", http_status=status, endpoint=path
                    )
                self._wait_before_retry(attempt, attempts, self._backoff(attempt))
                continue

            body = _parse_json(response, endpoint)
            if isinstance(body, dict) and "code" in body and "msg" in body and body["code"] not in (0, 200, "0", "200"):
                code = _int_or_none(body["code"])
                raise MexcError(
                    f"MEXC {endpoint}: {explain_error(code, str(body['msg']))}",
                    code=code,
                    http_status=status,
                    endpoint=path,
                )
            if status >= 400:
                raise MexcError(
                    f"MEXC {endpoint}: HTTP {status}: {_snippet(response.text)}", http_status=status, endpoint=path
                )
            return body
        raise MexcError(
            f"MEXC {endpoint}: gave up after {attempts} attempts; last problem: {last_problem}", endpoint=path
        )


def _retry_after_seconds(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers)


def _parse_json(response: httpx.Response, endpoint: str) -> Any:
    try:
        return json.loads(response.text)
    except ValueError:
        raise MexcError(
            f"MEXC {endpoint}: malformed JSON in the response (HTTP {response.status_code}, "
            f"content-type {response.headers.get('content-type', '?')}): {_snippet(response.text)!r}",
            http_status=response.status_code,
            endpoint=endpoint,
        ) from None


def _snippet(text: str, limit: int = 120) -> str:
    text = text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# ---- payload parsers: MEXC-shaped dicts → domain values, with errors that name the field ----------


def decimal_field(payload: Mapping[str, Any], field: str, *, where: str, default: Decimal | None = None) -> Decimal:
    """A numeric field that MEXC sends as a string (sometimes a number)."""
    if field not in payload or payload[field] is None or payload[field] == "":
        if default is not None:
            return default
        raise ValueError(f"{where}: field {field!r} is missing")
    try:
        value = Decimal(str(payload[field]))
    except InvalidOperation:
        raise ValueError(f"{where}: field {field!r} is not a number: {payload[field]!r}") from None
    if not value.is_finite():
        raise ValueError(f"{where}: field {field!r} is not finite: {payload[field]!r}")
    return value


def parse_price(payload: Mapping[str, Any], symbol: str) -> Decimal | None:
    """The ticker price, or None when the exchange gave none (the plan then HOLDs and says why)."""
    where = f"ticker/price {symbol}"
    if not isinstance(payload, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(payload).__name__}")
    if payload.get("symbol") not in (None, symbol):
        raise ValueError(f"{where}: answered for symbol {payload.get('symbol')!r}")
    if payload.get("price") in (None, ""):
        return None
    return decimal_field(payload, "price", where=where)


def parse_balances(account: Mapping[str, Any], base_asset: str, quote_asset: str) -> Balances:
    """Free and locked balances of the two assets; an asset the account never held counts as zero."""
    if not isinstance(account, Mapping) or not isinstance(account.get("balances"), list):
        raise ValueError("account: field 'balances' is missing or not a list")
    by_asset = {str(row.get("asset")): row for row in account["balances"] if isinstance(row, Mapping)}
    zero = Decimal(0)

    def amount(asset: str, field: str) -> Decimal:
        row = by_asset.get(asset)
        return zero if row is None else decimal_field(row, field, where=f"account balance {asset}", default=zero)

    balances = Balances(
        base_free=amount(base_asset, "free"),
        base_locked=amount(base_asset, "locked"),
        quote_free=amount(quote_asset, "free"),
        quote_locked=amount(quote_asset, "locked"),
    )
    balances.validate()
    return balances


def taker_fee_rate(account: Mapping[str, Any]) -> Decimal | None:
    """The account's taker commission as a fraction (MEXC reports it in basis points, e.g. 20 = 0.2 %)."""
    raw = account.get("takerCommission") if isinstance(account, Mapping) else None
    if raw in (None, ""):
        return None
    return decimal_field(account, "takerCommission", where="account") / Decimal(10000)


def parse_symbol_rules(payload: Mapping[str, Any], symbol: str) -> SymbolRules:
    """Trading limits from exchangeInfo — the only source of precision and minimums (never hard-coded).

    MEXC has no Binance-style LOT_SIZE/MIN_NOTIONAL filters (`filters` is []): the quantity step is
    `baseAssetPrecision` decimals, the minimum quantity `baseSizePrecision`, the minimum order value
    `quoteAmountPrecision` and the maximum `maxQuoteAmount`. We only place MARKET orders, so where MEXC
    also publishes the market-order variants (`quoteAmountPrecisionMarket`, `maxQuoteAmountMarket`)
    those win.
    """
    where = f"exchangeInfo {symbol}"
    symbols = payload.get("symbols") if isinstance(payload, Mapping) else None
    if not isinstance(symbols, list):
        raise ValueError(f"{where}: field 'symbols' is missing or not a list")
    matches = [row for row in symbols if isinstance(row, Mapping) and row.get("symbol") == symbol]
    if not matches:
        raise ValueError(f"{where}: symbol not listed (got {[row.get('symbol') for row in symbols][:5]})")
    row = matches[0]
    for field in ("baseAsset", "quoteAsset", "status", "baseAssetPrecision", "quoteAssetPrecision", "orderTypes"):
        if field not in row:
            raise ValueError(f"{where}: field {field!r} is missing")

    def present(field: str) -> bool:
        return row.get(field) not in (None, "")

    min_field = "quoteAmountPrecisionMarket" if present("quoteAmountPrecisionMarket") else "quoteAmountPrecision"
    max_field = "maxQuoteAmountMarket" if present("maxQuoteAmountMarket") else "maxQuoteAmount"
    return SymbolRules(
        symbol=symbol,
        base_asset=str(row["baseAsset"]),
        quote_asset=str(row["quoteAsset"]),
        status=str(row["status"]),
        spot_trading_allowed=bool(row.get("isSpotTradingAllowed", True)),
        order_types=tuple(str(kind) for kind in row["orderTypes"]),
        base_precision=int(decimal_field(row, "baseAssetPrecision", where=where)),
        quote_precision=int(decimal_field(row, "quoteAssetPrecision", where=where)),
        min_qty=decimal_field(row, "baseSizePrecision", where=where, default=Decimal(0)),
        min_notional=decimal_field(row, min_field, where=where, default=Decimal(0)),
        max_notional=decimal_field(row, max_field, where=where) if present(max_field) else None,
    )


def parse_trades(rows: Sequence[Mapping[str, Any]], symbol: str) -> list[Trade]:
    """myTrades rows → Trade values (numbers arrive as strings; `time` is epoch milliseconds)."""
    trades = []
    for index, row in enumerate(rows):
        where = f"myTrades[{index}] {symbol}"
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: expected an object, got {type(row).__name__}")
        if row.get("symbol") not in (None, symbol):
            continue
        for field in ("id", "time", "isBuyer"):
            if row.get(field) in (None, ""):
                raise ValueError(f"{where}: field {field!r} is missing")
        price = decimal_field(row, "price", where=where)
        qty = decimal_field(row, "qty", where=where)
        if price <= 0 or qty <= 0:
            raise ValueError(f"{where}: price and qty must be positive, got price={price} qty={qty}")
        trades.append(
            Trade(
                trade_id=str(row["id"]),
                symbol=symbol,
                order_id=None if row.get("orderId") in (None, "") else str(row["orderId"]),
                price=price,
                qty=qty,
                quote_qty=decimal_field(row, "quoteQty", where=where, default=price * qty),
                commission=decimal_field(row, "commission", where=where, default=Decimal(0)),
                commission_asset=(str(row["commissionAsset"]) if row.get("commissionAsset") else None),
                time_ms=int(row["time"]),
                is_buyer=_as_bool(row["isBuyer"], field="isBuyer", where=where),
                is_maker=None if row.get("isMaker") is None else _as_bool(row["isMaker"], field="isMaker", where=where),
            )
        )
    return trades


def _as_bool(value: Any, *, field: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in {"true", "1"}:
        return True
    if str(value).lower() in {"false", "0"}:
        return False
    raise ValueError(f"{where}: field {field!r} is not a boolean: {value!r}")
