"""Canonical raw market tables (SPEC S4.1): column names, types and units, and their validation.

Every source (demo or live) produces frames of exactly these schemas, so everything downstream is
source-agnostic. Units are fixed here: volumes and institutional flows in shares, turnover in TWD,
margin in lots (1,000 shares) as published, revenue in thousand TWD. Missing prices are null, never 0.
"""

from __future__ import annotations

import polars as pl

DAILY_QUOTES = {
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "market": pl.Utf8,  # TWSE | TPEx
    "name": pl.Utf8,
    "open": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "close": pl.Float64,
    "volume": pl.Int64,  # shares
    "turnover": pl.Int64,  # TWD
    "trades": pl.Int64,
    "change": pl.Float64,  # TWD vs previous close, signed
    "is_etf": pl.Boolean,
    "is_suspended": pl.Boolean,
}

INSTITUTIONAL_FLOWS = {
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "foreign_buy": pl.Int64,  # foreign & mainland investors excl. foreign dealers, shares
    "foreign_sell": pl.Int64,
    "foreign_net": pl.Int64,
    "foreign_dealer_buy": pl.Int64,
    "foreign_dealer_sell": pl.Int64,
    "foreign_dealer_net": pl.Int64,
    "trust_buy": pl.Int64,  # investment trusts (投信)
    "trust_sell": pl.Int64,
    "trust_net": pl.Int64,
    "dealer_buy": pl.Int64,  # dealers, proprietary + hedging
    "dealer_sell": pl.Int64,
    "dealer_net": pl.Int64,
    "total_net": pl.Int64,
}

MARGIN_BALANCES = {
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "margin_buy": pl.Int64,  # lots (張 = 1,000 shares)
    "margin_sell": pl.Int64,
    "margin_cash_repay": pl.Int64,
    "margin_prev_balance": pl.Int64,
    "margin_balance": pl.Int64,
    "margin_limit": pl.Int64,
    "short_cover": pl.Int64,  # 融券買進
    "short_sell": pl.Int64,  # 融券賣出
    "short_stock_repay": pl.Int64,
    "short_prev_balance": pl.Int64,
    "short_balance": pl.Int64,
    "short_limit": pl.Int64,
    "offset": pl.Int64,  # 資券互抵
}

VALUATIONS = {
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "pe": pl.Float64,  # null when earnings are negative ("-")
    "pb": pl.Float64,
    "dividend_yield": pl.Float64,  # percent
}

MONTHLY_REVENUE = {
    "stock_id": pl.Utf8,
    "year_month": pl.Utf8,  # YYYY-MM the revenue describes
    "revenue": pl.Int64,  # thousand TWD
    "published_on": pl.Date,  # point in time: first day the figure was public
}

FINANCIALS = {
    "stock_id": pl.Utf8,
    "fiscal_quarter": pl.Utf8,  # YYYYQn
    "eps": pl.Float64,  # TWD, for the quarter
    "net_income": pl.Int64,  # thousand TWD, for the quarter
    "equity": pl.Int64,  # thousand TWD, at quarter end
    "revenue": pl.Int64,  # thousand TWD, for the quarter
    "published_on": pl.Date,
}

SHAREHOLDING_DISTRIBUTION = {
    "stock_id": pl.Utf8,
    "week": pl.Date,  # TDCC data date (Friday)
    "level": pl.Int8,  # 1–15 holding bands, 16 adjustment, 17 total (TDCC numbering)
    "holders": pl.Int64,
    "shares": pl.Int64,
    "pct": pl.Float64,  # percent of outstanding shares
    "published_on": pl.Date,
}

# One row per event that changes a stock's price basis (ex-rights/dividend, capital reduction, par-value
# change, split). The backward adjustment factor of an event is reference_price / prior_close.
CORPORATE_ACTION_KINDS = (
    "cash_dividend",
    "stock_dividend",
    "cash_and_stock",
    "capital_reduction",
    "par_value_change",
    "split",
)

CORPORATE_ACTIONS = {
    "stock_id": pl.Utf8,
    "ex_date": pl.Date,  # first trading day on the new basis (ex-date / resumption date)
    "market": pl.Utf8,  # TWSE | TPEx
    "kind": pl.Utf8,  # one of CORPORATE_ACTION_KINDS
    "prior_close": pl.Float64,  # TWD, the exchange's close before the event
    "reference_price": pl.Float64,  # TWD, the exchange's reference price on ex_date
    "cash_per_share": pl.Float64,  # TWD per share, null when none
    "stock_per_share": pl.Float64,  # new shares per existing share, null when none
    "published_on": pl.Date,  # point in time: first day the event was public
}

RAW_TABLES: dict[str, dict[str, pl.DataType]] = {
    "daily_quotes": DAILY_QUOTES,
    "institutional_flows": INSTITUTIONAL_FLOWS,
    "margin_balances": MARGIN_BALANCES,
    "valuations": VALUATIONS,
    "monthly_revenue": MONTHLY_REVENUE,
    "financials": FINANCIALS,
    "shareholding_distribution": SHAREHOLDING_DISTRIBUTION,
    "corporate_actions": CORPORATE_ACTIONS,
}

# The natural key of each table: duplicates on it are bad input.
KEYS = {
    "daily_quotes": ("stock_id", "trade_date"),
    "institutional_flows": ("stock_id", "trade_date"),
    "margin_balances": ("stock_id", "trade_date"),
    "valuations": ("stock_id", "trade_date"),
    "monthly_revenue": ("stock_id", "year_month"),
    "financials": ("stock_id", "fiscal_quarter"),
    "shareholding_distribution": ("stock_id", "week", "level"),
    "corporate_actions": ("stock_id", "ex_date", "kind"),
}

NON_NEGATIVE = {
    "daily_quotes": ("open", "high", "low", "close", "volume", "turnover", "trades"),
    "institutional_flows": ("foreign_buy", "foreign_sell", "trust_buy", "trust_sell", "dealer_buy", "dealer_sell"),
    "margin_balances": ("margin_balance", "margin_limit", "short_balance"),
    "valuations": ("pb", "dividend_yield"),
    "monthly_revenue": (),
    "financials": (),
    "shareholding_distribution": ("holders", "shares", "pct"),
    "corporate_actions": ("prior_close", "reference_price", "cash_per_share", "stock_per_share"),
}


class BadMarketData(ValueError):
    """Input that does not match the canonical schema; the message names table, date and field."""


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(schema=RAW_TABLES[table])


def conform(table: str, frame: pl.DataFrame, *, context: str = "") -> pl.DataFrame:
    """Cast to the canonical schema and reject bad input with an error naming table/date/field.

    Checks: every column present and castable, keys non-null and unique, no negative prices or
    volumes, high ≥ low. Returns the frame with columns in canonical order.
    """
    schema = RAW_TABLES[table]
    where = f"{table}{' ' + context if context else ''}"
    missing = [c for c in schema if c not in frame.columns]
    if missing:
        raise BadMarketData(f"{where}: missing field(s) {missing}")
    try:
        out = frame.select([pl.col(c).cast(t, strict=True) for c, t in schema.items()])
    except Exception as exc:  # polars raises several types for bad casts
        bad = _first_uncastable(frame, schema)
        raise BadMarketData(f"{where}: field {bad!r} has values of the wrong type ({exc.__class__.__name__})") from exc
    keys = KEYS[table]
    for key in keys:
        if out[key].null_count():
            raise BadMarketData(f"{where}: field {key!r} is empty on {out[key].null_count()} row(s)")
    dupes = out.filter(out.select(keys).is_duplicated())
    if dupes.height:
        sample = dupes.select(keys).row(0)
        named = ", ".join(f"{key}={value}" for key, value in zip(keys, sample, strict=True))
        raise BadMarketData(f"{where}: duplicate rows for {named} (fields {', '.join(keys)})")
    for column in NON_NEGATIVE[table]:
        negative = out.filter(pl.col(column) < 0)
        if negative.height:
            row = negative.row(0, named=True)
            date = row.get("trade_date") or row.get("week") or row.get("year_month") or row.get("ex_date")
            raise BadMarketData(
                f"{where}: field {column!r} is negative ({row[column]}) for stock {row['stock_id']} on {date}"
            )
    if table == "daily_quotes":
        inverted = out.filter(pl.col("high") < pl.col("low"))
        if inverted.height:
            row = inverted.row(0, named=True)
            raise BadMarketData(
                f"{where}: field 'high' ({row['high']}) below 'low' ({row['low']}) for stock "
                f"{row['stock_id']} on {row['trade_date']}"
            )
    if table == "corporate_actions":
        unknown = out.filter(~pl.col("kind").is_in(CORPORATE_ACTION_KINDS))
        if unknown.height:
            row = unknown.row(0, named=True)
            raise BadMarketData(
                f"{where}: field 'kind' is {row['kind']!r} for stock {row['stock_id']} on {row['ex_date']} "
                f"(expected one of {', '.join(CORPORATE_ACTION_KINDS)})"
            )
    return out


def _first_uncastable(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> str:
    for column, dtype in schema.items():
        try:
            frame.get_column(column).cast(dtype, strict=True)
        except Exception:
            return column
    return "?"
