"""Strategy backtest: signals → positions → NAV, trades and costs, one trading day at a time.

The day loop is the only implementation: a range backfill runs it over many days from a fresh book,
the daily partition runs it over one day from the book stored for the previous trading day, so both
give the same rows. Per day D and strategy, in this order:

1. **Corporate actions** (ex_date = D, point in time): a holding's shares are divided by the event's
   factor (reference price / prior close), so its value is unchanged across the ex-date — dividends
   are reinvested, splits and reductions neutral. NAV is therefore a total-return NAV.
2. **Exits at D's open**: positions held `hold_days` trading days, positions with a SELL signal on
   the previous trading day, and sells that could not be filled before. A SELL is not filled when the
   stock is suspended, has no open, or opens at or below its limit-down; it is retried the next day.
3. **Entries at D's open** from the previous trading day's BUY signals, by confidence then score
   (stocks already held are skipped), while fewer than `max_positions` are held. Each gets an equal
   slot of the previous close's NAV / max_positions, in whole lots (1,000 shares; odd lots as an
   option) that the cash can pay with commission. A BUY is not filled at or above the limit-up open,
   when suspended, without an open, for full-cash-delivery stocks (unless the rule allows them), or
   when the slot cannot pay one lot; the next candidate is tried instead.
4. **Close**: holdings are valued at D's close (the last known close when missing).

Turnover of a day = (bought + sold value) / 2 / previous NAV. A position's PnL is net of both
commissions and the tax; it is a hit when that PnL is > 0.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import polars as pl

from qrl_platform.evaluation.rules import COMMISSION_RATE, BacktestRule, commission, transaction_tax

POSITION_SCHEMA = {
    "strategy_id": pl.Utf8,
    "trade_date": pl.Date,
    "stock_id": pl.Utf8,
    "shares": pl.Float64,
    "entry_date": pl.Date,
    "entry_price": pl.Float64,
    "cost_basis": pl.Float64,
    "held_days": pl.Int32,
    "sell_pending": pl.Boolean,
    "last_price": pl.Float64,
    "market_value": pl.Float64,
    "is_etf": pl.Boolean,
}
TRADE_SCHEMA = {
    "strategy_id": pl.Utf8,
    "trade_date": pl.Date,
    "stock_id": pl.Utf8,
    "side": pl.Utf8,  # BUY | SELL
    "status": pl.Utf8,  # FILLED | UNFILLED
    "reason": pl.Utf8,  # signal, hold_days, sell_signal, retry; for UNFILLED why not
    "shares": pl.Float64,
    "price": pl.Float64,
    "value": pl.Float64,
    "commission": pl.Float64,
    "tax": pl.Float64,
    "pnl": pl.Float64,  # SELL only: proceeds − costs − cost basis
}
NAV_SCHEMA = {
    "strategy_id": pl.Utf8,
    "trade_date": pl.Date,
    "nav": pl.Float64,
    "cash": pl.Float64,
    "positions_value": pl.Float64,
    "positions": pl.Int32,
    "daily_return": pl.Float64,
    "bought_value": pl.Float64,
    "sold_value": pl.Float64,
    "commission": pl.Float64,
    "tax": pl.Float64,
    "costs": pl.Float64,
    "turnover": pl.Float64,
    "buy_orders": pl.Int32,
    "buy_unfilled": pl.Int32,
    "sell_orders": pl.Int32,
    "sell_unfilled": pl.Int32,
    "closed_trades": pl.Int32,
    "winning_trades": pl.Int32,
}


@dataclass
class Holding:
    stock_id: str
    shares: float
    entry_date: dt.date
    entry_price: float
    cost_basis: float
    held_days: int = 0
    sell_pending: bool = False
    last_price: float = 0.0
    is_etf: bool = False


@dataclass
class Book:
    """One strategy's account between two days: cash, holdings and the last close's NAV."""

    strategy_id: str
    rule: BacktestRule
    hold_days: int
    cash: float
    nav: float
    holdings: dict[str, Holding] = field(default_factory=dict)

    @classmethod
    def fresh(cls, strategy_id: str, rule: BacktestRule, horizon_days: int) -> Book:
        return cls(strategy_id, rule, rule.hold_days or horizon_days, rule.capital_twd, rule.capital_twd)


class Quote(NamedTuple):
    open: float | None
    close: float | None
    limit_up: float | None
    limit_down: float | None
    suspended: bool
    full_cash_delivery: bool
    is_etf: bool


@dataclass
class BacktestResult:
    nav: pl.DataFrame
    positions: pl.DataFrame
    trades: pl.DataFrame


MARKET_COLUMNS = (
    "stock_id",
    "trade_date",
    "open",
    "close",
    "limit_up",
    "limit_down",
    "is_suspended",
    "is_full_cash_delivery",
    "is_etf",
)


def quotes_by_day(market: pl.DataFrame) -> dict[dt.date, dict[str, Quote]]:
    """`market`: MARKET_COLUMNS (quotes joined with tradability) → {day: {stock: Quote}}."""
    flags = [pl.col(c).fill_null(False) for c in ("is_suspended", "is_full_cash_delivery", "is_etf")]
    per_day = (
        market.select("trade_date", "stock_id", "open", "close", "limit_up", "limit_down", *flags)
        .group_by("trade_date")
        .agg(pl.all())
    )
    out: dict[dt.date, dict[str, Quote]] = {}
    for day, stocks, *columns in per_day.iter_rows():
        out[day] = dict(zip(stocks, map(Quote._make, zip(*columns, strict=True)), strict=True))
    return out


def orders_by_day(signals: pl.DataFrame, open_days: Sequence[dt.date]) -> dict[dt.date, dict[str, tuple]]:
    """BUY/SELL signals of day P become orders for the next trading day: {D: {strategy: (buys, sells)}},
    buys ordered by confidence then score (highest first), then stock id."""
    next_day = {open_days[i]: open_days[i + 1] for i in range(len(open_days) - 1)}
    out: dict[dt.date, dict[str, tuple[list[str], set[str]]]] = {}
    grouped = (
        signals.filter(pl.col("signal").is_in(["BUY", "SELL"]) & pl.col("trade_date").is_in(list(next_day)))
        .sort(
            ["trade_date", "strategy_id", "confidence", "score", "stock_id"],
            descending=[False, False, True, True, False],
        )
        .group_by("trade_date", "strategy_id", "signal", maintain_order=True)
        .agg(pl.col("stock_id"))
    )
    for day, strategy, signal, stocks in grouped.iter_rows():
        buys, sells = out.setdefault(next_day[day], {}).setdefault(strategy, ([], set()))
        if signal == "BUY":
            buys.extend(stocks)
        else:
            sells.update(stocks)
    return out


def simulate(
    books: Mapping[str, Book],
    days: Sequence[dt.date],
    quotes: Mapping[dt.date, Mapping[str, Quote]],
    orders: Mapping[dt.date, Mapping[str, tuple[list[str], set[str]]]],
    events: Mapping[dt.date, Mapping[str, float]] | None = None,
) -> BacktestResult:
    """Run every book through `days` (trading days, oldest first); the books hold the final state."""
    nav_rows: list[tuple] = []
    position_rows: list[tuple] = []
    trade_rows: list[tuple] = []
    events = events or {}
    for day in days:
        market = quotes.get(day, {})
        day_events = events.get(day, {})
        day_orders = orders.get(day, {})
        for strategy_id in sorted(books):
            book = books[strategy_id]
            buys, sells = day_orders.get(strategy_id, ([], set()))
            nav_rows.append(_step(book, day, market, day_events, buys, sells, trade_rows))
            position_rows.extend(
                (
                    strategy_id,
                    day,
                    h.stock_id,
                    h.shares,
                    h.entry_date,
                    h.entry_price,
                    h.cost_basis,
                    h.held_days,
                    h.sell_pending,
                    h.last_price,
                    h.shares * h.last_price,
                    h.is_etf,
                )
                for h in sorted(book.holdings.values(), key=lambda h: h.stock_id)
            )
    return BacktestResult(
        nav=pl.DataFrame(nav_rows, schema=NAV_SCHEMA, orient="row"),
        positions=pl.DataFrame(position_rows, schema=POSITION_SCHEMA, orient="row"),
        trades=pl.DataFrame(trade_rows, schema=TRADE_SCHEMA, orient="row"),
    )


def _step(
    book: Book,
    day: dt.date,
    market: Mapping[str, Quote],
    day_events: Mapping[str, float],
    buys: list[str],
    sells: set[str],
    trades: list[tuple],
) -> tuple:
    rule = book.rule
    previous_nav = book.nav
    figures = {"bought": 0.0, "sold": 0.0, "commission": 0.0, "tax": 0.0}
    counts = {"buy_orders": 0, "buy_unfilled": 0, "sell_orders": 0, "sell_unfilled": 0, "closed": 0, "wins": 0}

    for holding in book.holdings.values():
        factor = day_events.get(holding.stock_id)
        if factor:
            holding.shares /= factor
            holding.last_price *= factor
        holding.held_days += 1

    for stock_id in sorted(book.holdings):
        holding = book.holdings[stock_id]
        if holding.sell_pending:
            reason = "retry"
        elif stock_id in sells:
            reason = "sell_signal"
        elif holding.held_days >= book.hold_days:
            reason = "hold_days"
        else:
            continue
        counts["sell_orders"] += 1
        quote = market.get(stock_id)
        refusal = _sell_refusal(quote)
        if refusal:
            holding.sell_pending = True
            counts["sell_unfilled"] += 1
            trades.append(
                (
                    book.strategy_id,
                    day,
                    stock_id,
                    "SELL",
                    "UNFILLED",
                    refusal,
                    holding.shares,
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
            continue
        value = holding.shares * quote.open
        fee, tax = commission(value, rule.broker_discount), transaction_tax(value, holding.is_etf)
        pnl = value - fee - tax - holding.cost_basis
        book.cash += value - fee - tax
        figures["sold"] += value
        figures["commission"] += fee
        figures["tax"] += tax
        counts["closed"] += 1
        counts["wins"] += pnl > 0
        trades.append(
            (
                book.strategy_id,
                day,
                stock_id,
                "SELL",
                "FILLED",
                reason,
                holding.shares,
                quote.open,
                value,
                fee,
                tax,
                pnl,
            )
        )
        del book.holdings[stock_id]

    slot = previous_nav / rule.max_positions
    for stock_id in buys:
        if len(book.holdings) >= rule.max_positions:
            break
        if stock_id in book.holdings:
            continue
        counts["buy_orders"] += 1
        quote = market.get(stock_id)
        refusal = _buy_refusal(quote, rule)
        shares = 0
        if not refusal:
            budget = min(slot, book.cash)
            shares = _affordable_shares(budget, quote.open, rule)
            if shares <= 0:
                refusal = "cash_below_one_lot"
        if refusal:
            counts["buy_unfilled"] += 1
            trades.append(
                (book.strategy_id, day, stock_id, "BUY", "UNFILLED", refusal, None, None, None, None, None, None)
            )
            continue
        value = shares * quote.open
        fee = commission(value, rule.broker_discount)
        book.cash -= value + fee
        figures["bought"] += value
        figures["commission"] += fee
        book.holdings[stock_id] = Holding(
            stock_id, float(shares), day, quote.open, value + fee, 0, False, quote.open, quote.is_etf
        )
        trades.append(
            (
                book.strategy_id,
                day,
                stock_id,
                "BUY",
                "FILLED",
                "signal",
                float(shares),
                quote.open,
                value,
                fee,
                0.0,
                None,
            )
        )

    for holding in book.holdings.values():
        quote = market.get(holding.stock_id)
        if quote is not None and quote.close is not None and quote.close > 0:
            holding.last_price = quote.close
    positions_value = sum(h.shares * h.last_price for h in book.holdings.values())
    book.nav = book.cash + positions_value
    costs = figures["commission"] + figures["tax"]
    turnover = (figures["bought"] + figures["sold"]) / 2 / previous_nav if previous_nav > 0 else 0.0
    return (
        book.strategy_id,
        day,
        book.nav,
        book.cash,
        positions_value,
        len(book.holdings),
        book.nav / previous_nav - 1 if previous_nav > 0 else None,
        figures["bought"],
        figures["sold"],
        figures["commission"],
        figures["tax"],
        costs,
        turnover,
        counts["buy_orders"],
        counts["buy_unfilled"],
        counts["sell_orders"],
        counts["sell_unfilled"],
        counts["closed"],
        counts["wins"],
    )


def _sell_refusal(quote: Quote | None) -> str | None:
    if quote is None or quote.suspended:
        return "suspended"
    if quote.open is None or quote.open <= 0:
        return "no_open_price"
    if quote.limit_down is not None and quote.open <= quote.limit_down:
        return "limit_down"
    return None


def _buy_refusal(quote: Quote | None, rule: BacktestRule) -> str | None:
    if quote is None or quote.suspended:
        return "suspended"
    if quote.open is None or quote.open <= 0:
        return "no_open_price"
    if quote.full_cash_delivery and not rule.buy_full_cash_delivery:
        return "full_cash_delivery"
    if quote.limit_up is not None and quote.open >= quote.limit_up:
        return "limit_up"
    return None


def _affordable_shares(budget: float, price: float, rule: BacktestRule) -> int:
    """Whole lots whose value plus commission fits in `budget`."""
    lot = rule.lot_size
    lots = math.floor(budget / (price * lot * (1 + COMMISSION_RATE * rule.broker_discount)))
    while lots > 0 and lots * lot * price + commission(lots * lot * price, rule.broker_discount) > budget:
        lots -= 1
    return lots * lot


# ------------------------------------------------------------------------------------- book storage
def books_from_frames(
    nav: pl.DataFrame, positions: pl.DataFrame, rules: Mapping[str, tuple[BacktestRule, int]]
) -> dict[str, Book]:
    """Rebuild the books from one day's stored nav and positions rows; strategies without a row start fresh."""
    books: dict[str, Book] = {}
    stored = {row["strategy_id"]: row for row in nav.iter_rows(named=True)} if nav.height else {}
    for strategy_id, (rule, horizon) in rules.items():
        book = Book.fresh(strategy_id, rule, horizon)
        if strategy_id in stored:
            book.cash, book.nav = stored[strategy_id]["cash"], stored[strategy_id]["nav"]
            for row in positions.filter(pl.col("strategy_id") == strategy_id).iter_rows(named=True):
                book.holdings[row["stock_id"]] = Holding(
                    row["stock_id"],
                    row["shares"],
                    row["entry_date"],
                    row["entry_price"],
                    row["cost_basis"],
                    row["held_days"],
                    row["sell_pending"],
                    row["last_price"],
                    row["is_etf"],
                )
        books[strategy_id] = book
    return books
