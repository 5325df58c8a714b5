"""Could a signal have been traded? Price limits and trading restrictions per stock and day.

Taiwan stocks move at most ±10 % from the day's **reference price**: the previous close, except on an
ex-date (ex-dividend, ex-rights, resumption after a capital reduction, par-value change, split), where
the exchange publishes its own reference price (`corporate_actions.reference_price`). The limit is
rounded to the tick of its price level — limit-up down to the tick, limit-down up to the tick — so it
is always a price one can quote and never more than 10 % away. A stock closing at its limit-up was
bid at a price nobody would sell at: a BUY on it cannot be filled at the close the stats assume (and
a SELL at limit-down likewise).

Not modelled (documented in docs/total-return.md): leveraged/inverse ETFs (limit 10 % × leverage), the
first five days of a new listing (no limit) and intraday halts.

Disposition (處置股) and full-cash delivery (全額交割) come from the exchanges' announcements as
*notices*: stock_id, kind (`disposition` | `full_cash_delivery`), start_date, end_date (inclusive; null
when open-ended). The demo market publishes a few deterministic ones; the live source does not publish
them yet, so there every flag is False and the asset's metadata says so.
"""

from __future__ import annotations

import polars as pl

# Taiwan tick sizes by price level: upper bound (exclusive) → tick (TWSE/TPEx stocks since 2005).
STOCK_TICKS: tuple[tuple[float, float], ...] = ((10.0, 0.01), (50.0, 0.05), (100.0, 0.1), (500.0, 0.5), (1000.0, 1.0))
STOCK_TOP_TICK = 5.0
# ETFs (and ETNs) quote in 0.01 below 50 TWD and 0.05 from 50 up.
ETF_TICKS: tuple[tuple[float, float], ...] = ((50.0, 0.01),)
ETF_TOP_TICK = 0.05

LIMIT_FRACTION = 0.10
NOTICE_KINDS = ("disposition", "full_cash_delivery")

TRADABILITY_SCHEMA = {
    "stock_id": pl.Utf8,
    "trade_date": pl.Date,
    "reference_price": pl.Float64,
    "limit_up": pl.Float64,
    "limit_down": pl.Float64,
    "at_limit_up": pl.Boolean,
    "at_limit_down": pl.Boolean,
    "is_suspended": pl.Boolean,
    "is_disposition": pl.Boolean,
    "is_full_cash_delivery": pl.Boolean,
}

NOTICES_SCHEMA = {"stock_id": pl.Utf8, "kind": pl.Utf8, "start_date": pl.Date, "end_date": pl.Date}

# Guards against float noise: 45.5 × 1.1 is 50.050000000000004, 10.45 / 0.05 is 208.99999999999997.
_EPSILON = 1e-9


def tick_size(price: pl.Expr, is_etf: pl.Expr | None = None) -> pl.Expr:
    """The Taiwan tick for a price level (stocks; ETFs when `is_etf` is given and true)."""
    stock = _tick_table(price, STOCK_TICKS, STOCK_TOP_TICK)
    if is_etf is None:
        return stock
    return pl.when(is_etf.fill_null(False)).then(_tick_table(price, ETF_TICKS, ETF_TOP_TICK)).otherwise(stock)


def _tick_table(price: pl.Expr, table: tuple[tuple[float, float], ...], top: float) -> pl.Expr:
    expr: pl.Expr = pl.lit(top)
    for bound, tick in reversed(table):
        expr = pl.when(price < bound - _EPSILON).then(pl.lit(tick)).otherwise(expr)
    return expr


def price_limits(reference: pl.Expr, is_etf: pl.Expr | None = None) -> tuple[pl.Expr, pl.Expr]:
    """(limit_up, limit_down) for a reference price: ±10 %, limit-up rounded down and limit-down rounded
    up to the tick of the limit's own price level (so a limit never exceeds 10 %)."""
    up = reference * (1 + LIMIT_FRACTION)
    down = reference * (1 - LIMIT_FRACTION)
    up_tick = tick_size(up, is_etf)
    down_tick = tick_size(down, is_etf)
    limit_up = ((up / up_tick + _EPSILON).floor() * up_tick).round(2)
    limit_down = ((down / down_tick - _EPSILON).ceil() * down_tick).round(2)
    return limit_up, limit_down


def tradability(
    quotes: pl.DataFrame,
    actions: pl.DataFrame,
    previous_close: pl.DataFrame | None = None,
    notices: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """One row per quotes row: stock_id, trade_date, reference_price, limit_up, limit_down (Float64, ±10 %
    of the day's reference price — the corporate action's reference_price on an ex_date, else the
    previous close — rounded to the Taiwan tick), at_limit_up (Bool: close >= limit_up), at_limit_down
    (Bool: close <= limit_down), is_suspended, is_disposition, is_full_cash_delivery (Bool).

    `quotes`: stock_id, trade_date, close, and optionally is_suspended and is_etf (daily_quotes rows).
    `actions`: corporate_actions rows (stock_id, ex_date, reference_price; others ignored); may be empty.
    `previous_close`: stock_id, trade_date, close of earlier days (e.g. the previous trading days'
    daily_quotes); each quotes row's previous close is the last non-null close before its trade date,
    among these and the earlier rows of `quotes` itself. Without one the limits are null (unknown), and
    at_limit_up / at_limit_down False.
    `notices`: stock_id, kind, start_date, end_date (see the module docstring); None = none published.

    A missing close (no trade) is never at a limit. `is_suspended` is the quotes flag when present, else
    "no close". The reference price is also returned, so a limit can be checked by hand.
    """
    for column in ("stock_id", "trade_date", "close"):
        if column not in quotes.columns:
            raise ValueError(f"tradability: quotes lack field {column!r}")
    if quotes.is_empty():
        return pl.DataFrame(schema=TRADABILITY_SCHEMA)
    rows = quotes.select(
        pl.col("stock_id").cast(pl.Utf8),
        pl.col("trade_date").cast(pl.Date),
        pl.col("close").cast(pl.Float64),
        (pl.col("is_suspended").cast(pl.Boolean) if "is_suspended" in quotes.columns else pl.lit(None, pl.Boolean))
        .fill_null(pl.col("close").is_null())
        .alias("is_suspended"),
        (pl.col("is_etf").cast(pl.Boolean) if "is_etf" in quotes.columns else pl.lit(False)).alias("is_etf"),
    ).with_row_index("_row")

    rows = rows.join(_previous_closes(rows, previous_close), on=["stock_id", "trade_date"], how="left")
    rows = rows.join(_ex_date_references(actions), on=["stock_id", "trade_date"], how="left")
    reference = pl.coalesce("ex_reference", "previous_close")
    limit_up, limit_down = price_limits(pl.col("reference_price"), pl.col("is_etf"))
    flags = _notice_flags(rows.select("_row", "stock_id", "trade_date"), notices)
    return (
        rows.with_columns(reference.alias("reference_price"))
        .with_columns(limit_up.alias("limit_up"), limit_down.alias("limit_down"))
        .with_columns(
            (pl.col("close") >= pl.col("limit_up") - _EPSILON).fill_null(False).alias("at_limit_up"),
            (pl.col("close") <= pl.col("limit_down") + _EPSILON).fill_null(False).alias("at_limit_down"),
        )
        .join(flags, on="_row", how="left")
        .sort("_row")
        .select(list(TRADABILITY_SCHEMA))
        .cast(TRADABILITY_SCHEMA)
    )


def _previous_closes(rows: pl.DataFrame, previous_close: pl.DataFrame | None) -> pl.DataFrame:
    """stock_id, trade_date, previous_close: the last traded close strictly before each quotes row."""
    history = [rows.select("stock_id", "trade_date", "close")]
    if previous_close is not None and not previous_close.is_empty():
        history.append(
            previous_close.select(
                pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date), pl.col("close").cast(pl.Float64)
            )
        )
    closes = (
        pl.concat(history)
        .filter(pl.col("close").is_not_null() & (pl.col("close") > 0))
        .unique(["stock_id", "trade_date"], keep="first")
        .sort("stock_id", "trade_date")
        .rename({"trade_date": "close_date", "close": "previous_close"})
    )
    wanted = rows.select("stock_id", "trade_date").unique().sort("stock_id", "trade_date")
    # Both sides are sorted by (stock_id, date), so sorted within each stock as the asof join needs.
    return wanted.join_asof(
        closes,
        left_on="trade_date",
        right_on="close_date",
        by="stock_id",
        strategy="backward",
        allow_exact_matches=False,
        check_sortedness=False,
    ).select("stock_id", "trade_date", "previous_close")


def _ex_date_references(actions: pl.DataFrame) -> pl.DataFrame:
    """stock_id, trade_date (= ex_date), ex_reference. Two events of one stock on one day (a cash and a
    stock dividend published as separate rows) leave the lowest reference price: the exchange's
    reference for the day reflects both, and the lowest is the one that includes every deduction."""
    schema = {"stock_id": pl.Utf8, "trade_date": pl.Date, "ex_reference": pl.Float64}
    if actions is None or actions.is_empty():
        return pl.DataFrame(schema=schema)
    for column in ("stock_id", "ex_date", "reference_price"):
        if column not in actions.columns:
            raise ValueError(f"tradability: corporate actions lack field {column!r}")
    bad = actions.filter(pl.col("reference_price").is_null() | (pl.col("reference_price") <= 0))
    if bad.height:
        row = bad.row(0, named=True)
        raise ValueError(
            f"tradability: corporate action of stock {row['stock_id']} on ex_date {row['ex_date']}"
            f"{' (' + str(row['kind']) + ')' if 'kind' in row else ''} has no positive reference_price "
            f"({row['reference_price']})"
        )
    return (
        actions.group_by(pl.col("stock_id").cast(pl.Utf8), pl.col("ex_date").cast(pl.Date).alias("trade_date"))
        .agg(pl.col("reference_price").cast(pl.Float64).min().alias("ex_reference"))
        .cast(schema)
    )


def _notice_flags(rows: pl.DataFrame, notices: pl.DataFrame | None) -> pl.DataFrame:
    """_row, is_disposition, is_full_cash_delivery: whether a notice of that kind covers the day."""
    if notices is None or notices.is_empty():
        return rows.select("_row", pl.lit(False).alias("is_disposition"), pl.lit(False).alias("is_full_cash_delivery"))
    missing = [c for c in NOTICES_SCHEMA if c not in notices.columns]
    if missing:
        raise ValueError(f"tradability: notices lack field(s) {missing}")
    unknown = set(notices.get_column("kind").unique().to_list()) - set(NOTICE_KINDS)
    if unknown:
        raise ValueError(
            f"tradability: notices field 'kind' has unknown value(s) {sorted(unknown)}; know {NOTICE_KINDS}"
        )
    covered = (
        rows.join(notices.select(list(NOTICES_SCHEMA)).cast(NOTICES_SCHEMA), on="stock_id", how="inner")
        .filter(
            (pl.col("trade_date") >= pl.col("start_date"))
            & (pl.col("end_date").is_null() | (pl.col("trade_date") <= pl.col("end_date")))
        )
        .group_by("_row")
        .agg(
            (pl.col("kind") == "disposition").any().alias("is_disposition"),
            (pl.col("kind") == "full_cash_delivery").any().alias("is_full_cash_delivery"),
        )
    )
    return (
        rows.select("_row")
        .join(covered, on="_row", how="left")
        .with_columns(pl.col("is_disposition").fill_null(False), pl.col("is_full_cash_delivery").fill_null(False))
    )
