"""Fundamental indicators: valuation, earnings and revenue factors, point in time, for many stocks at once.

Point in time: the value for day D uses only rows published on or before D — `published_on`
when the source knows it, else the statutory deadline (revenue by the 10th of the next month; Q1 May 15,
Q2 Aug 14, Q3 Nov 14, Q4 Mar 31 next year).

How it is vectorised: every publication is an *event* at which what the market knows about a stock
changes. For each (stock, event date) we compute the factors from the rows known at that date — the
latest known period plus the earlier periods the factor needs, each kept only if it was itself published
by then — and attach the last event on or before each trading day with one `join_asof`. No per-stock
loops; the event tables are tiny (one row per stock per publication date).

Staleness: a stock whose latest known month (quarter) is more than REVENUE_MAX_AGE_MONTHS
(FINANCIALS_MAX_AGE_QUARTERS) behind the day has stopped reporting; its factors are null rather than
years old. The bound also makes results independent of how far back a run reads: `history_window`
gives the periods a range needs, and anything older could only ever produce a null.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from qrl_platform.factors.fundamental.factors import FUNDAMENTAL_FACTORS

FACTOR_COLUMNS: tuple[str, ...] = tuple(f.factor_id for f in FUNDAMENTAL_FACTORS)

# Normal lag is 1–2 months (revenue) and 2 quarters (statements); one extra period tolerates a late filer.
REVENUE_MAX_AGE_MONTHS = 3
FINANCIALS_MAX_AGE_QUARTERS = 3
# revenue_3m_yoy reaches 14 months behind the latest month; eps_yoy 4 quarters behind the latest quarter.
REVENUE_HISTORY_MONTHS = REVENUE_MAX_AGE_MONTHS + 14
FINANCIALS_HISTORY_QUARTERS = FINANCIALS_MAX_AGE_QUARTERS + 4

_REVENUE_OFFSETS = (0, 1, 2, 12, 13, 14)  # months behind the latest known month
_FINANCIALS_OFFSETS = (0, 1, 2, 3, 4)  # quarters behind the latest known quarter


# ---------------------------------------------------------------- period arithmetic
def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def month_start(index: int) -> dt.date:
    return dt.date(index // 12, index % 12 + 1, 1)


def quarter_index(day: dt.date) -> int:
    return day.year * 4 + (day.month - 1) // 3


def quarter_start(index: int) -> dt.date:
    return dt.date(index // 4, (index % 4) * 3 + 1, 1)


def history_window(first: dt.date, last: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """Partition keys (as dates) of the periodic tables that days first..last can possibly use.

    monthly_revenue keys are month starts, financials keys are fiscal-quarter starts.
    """
    return {
        "monthly_revenue": (month_start(month_index(first) - REVENUE_HISTORY_MONTHS), month_start(month_index(last))),
        "financials": (
            quarter_start(quarter_index(first) - FINANCIALS_HISTORY_QUARTERS),
            quarter_start(quarter_index(last)),
        ),
    }


def _month_index_expr(year_month: pl.Expr) -> pl.Expr:
    # "YYYY-MM" -> year * 12 + month - 1
    return year_month.str.slice(0, 4).cast(pl.Int32) * 12 + year_month.str.slice(5, 2).cast(pl.Int32) - 1


def _quarter_index_expr(fiscal_quarter: pl.Expr) -> pl.Expr:
    # "YYYYQn" -> year * 4 + n - 1
    return fiscal_quarter.str.slice(0, 4).cast(pl.Int32) * 4 + fiscal_quarter.str.slice(5, 1).cast(pl.Int32) - 1


def _revenue_deadline(month: pl.Expr) -> pl.Expr:
    """The 10th of the month after `month` (a month index)."""
    following = month + 1
    return pl.date(following // 12, following % 12 + 1, 10)


def _statement_deadline(quarter: pl.Expr) -> pl.Expr:
    """Statutory filing deadline of a quarter index: Q1 May 15, Q2 Aug 14, Q3 Nov 14, Q4 Mar 31 next year."""
    year, q = quarter // 4, quarter % 4 + 1
    return (
        pl.when(q == 1)
        .then(pl.date(year, 5, 15))
        .when(q == 2)
        .then(pl.date(year, 8, 14))
        .when(q == 3)
        .then(pl.date(year, 11, 14))
        .otherwise(pl.date(year + 1, 3, 31))
    )


def _day_month(day: pl.Expr) -> pl.Expr:
    return day.dt.year().cast(pl.Int32) * 12 + day.dt.month().cast(pl.Int32) - 1


def _day_quarter(day: pl.Expr) -> pl.Expr:
    return day.dt.year().cast(pl.Int32) * 4 + (day.dt.month().cast(pl.Int32) - 1) // 3


# ---------------------------------------------------------------- point-in-time events
def _known_at_events(rows: pl.DataFrame, values: tuple[str, ...], offsets: tuple[int, ...]) -> pl.DataFrame:
    """For each (stock, publication date): the latest period known then, and `values` of the periods
    `offsets` behind it as known then (null when such a period was published later, or never).

    `rows` has stock_id, period (int), known_from (date) and the value columns.
    """
    events = (
        rows.group_by("stock_id", "known_from")
        .agg(pl.col("period").max().alias("newest"))
        .sort("stock_id", "known_from")
        # A late correction of an old period is an event too, but never moves "latest" backwards.
        .with_columns(pl.col("newest").cum_max().over("stock_id").alias("latest"))
        .drop("newest")
    )
    for k in offsets:
        lookup = rows.select(
            "stock_id",
            (pl.col("period") + k).alias("latest"),
            pl.col("known_from").alias("_known_k"),
            *[pl.col(v).alias(f"{v}_{k}") for v in values],
        )
        events = (
            events.join(lookup, on=["stock_id", "latest"], how="left")
            .with_columns(
                [
                    pl.when(pl.col("_known_k") <= pl.col("known_from")).then(pl.col(f"{v}_{k}")).alias(f"{v}_{k}")
                    for v in values
                ]
            )
            .drop("_known_k")
        )
    return events


def _pct_change(current: pl.Expr, base: pl.Expr) -> pl.Expr:
    """(current / base − 1) × 100, null when the base ≤ 0 (growth off a loss or zero is meaningless)."""
    return pl.when(base > 0).then((current / base - 1.0) * 100.0)


def revenue_events(monthly_revenue: pl.DataFrame) -> pl.DataFrame:
    """Revenue factors as of every publication event: stock_id, known_from, revenue_month, factors."""
    rows = monthly_revenue.select(
        pl.col("stock_id").cast(pl.Utf8),
        _month_index_expr(pl.col("year_month")).alias("period"),
        pl.col("revenue").cast(pl.Float64),
        pl.col("published_on").cast(pl.Date),
    ).with_columns(pl.coalesce("published_on", _revenue_deadline(pl.col("period"))).alias("known_from"))
    events = _known_at_events(rows, ("revenue",), _REVENUE_OFFSETS)
    r = {k: pl.col(f"revenue_{k}") for k in _REVENUE_OFFSETS}
    return events.select(
        "stock_id",
        "known_from",
        pl.col("latest").alias("revenue_month"),
        _pct_change(r[0], r[12]).alias("revenue_yoy"),
        _pct_change(r[0], r[1]).alias("revenue_mom"),
        _pct_change(r[0] + r[1] + r[2], r[12] + r[13] + r[14]).alias("revenue_3m_yoy"),
    )


def financial_events(financials: pl.DataFrame) -> pl.DataFrame:
    """Statement factors as of every publication event: stock_id, known_from, statement_quarter, factors."""
    rows = financials.select(
        pl.col("stock_id").cast(pl.Utf8),
        _quarter_index_expr(pl.col("fiscal_quarter")).alias("period"),
        pl.col("eps").cast(pl.Float64),
        pl.col("net_income").cast(pl.Float64),
        pl.col("equity").cast(pl.Float64),
        pl.col("published_on").cast(pl.Date),
    ).with_columns(pl.coalesce("published_on", _statement_deadline(pl.col("period"))).alias("known_from"))
    events = _known_at_events(rows, ("eps", "net_income", "equity"), _FINANCIALS_OFFSETS)
    eps = {k: pl.col(f"eps_{k}") for k in _FINANCIALS_OFFSETS}
    income_4q = sum((pl.col(f"net_income_{k}") for k in range(1, 4)), pl.col("net_income_0"))
    return events.select(
        "stock_id",
        "known_from",
        pl.col("latest").alias("statement_quarter"),
        (eps[0] + eps[1] + eps[2] + eps[3]).alias("eps_ttm"),
        pl.when(pl.col("equity_0") > 0).then(income_4q / pl.col("equity_0") * 100.0).alias("roe_ttm"),
        _pct_change(eps[0], eps[4]).alias("eps_yoy"),
    )


def _as_of(days: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Attach to each (stock, day) the last event published on or before the day."""
    return days.sort("trade_date").join_asof(
        events.sort("known_from"),
        left_on="trade_date",
        right_on="known_from",
        by="stock_id",
        strategy="backward",
        check_sortedness=False,  # both sides are sorted globally on the key just above
    )


# ---------------------------------------------------------------- the public function
def compute(days: pl.DataFrame, monthly_revenue: pl.DataFrame, financials: pl.DataFrame) -> pl.DataFrame:
    """The fundamental factors for every (stock_id, trade_date) row of `days`.

    `days`: long frame with stock_id, trade_date and the day's valuations pe, pb, dividend_yield (a
    `valuations` frame, or quotes left-joined with it; missing valuation columns give null factors).
    `monthly_revenue` / `financials`: the canonical raw tables (any number of periods and stocks).
    Returns the rows of `days`, sorted by stock_id, trade_date, with one Float64 column per factor.
    """
    from qrl_platform.market import schema

    monthly_revenue = monthly_revenue if monthly_revenue.width else schema.empty("monthly_revenue")
    financials = financials if financials.width else schema.empty("financials")
    base = days.with_columns(
        [
            (pl.col(c).cast(pl.Float64) if c in days.columns else pl.lit(None, dtype=pl.Float64)).alias(c)
            for c in ("pe", "pb", "dividend_yield")
        ]
    ).with_columns(pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date))
    out = _as_of(base, revenue_events(monthly_revenue)).drop("known_from")
    out = _as_of(out, financial_events(financials)).drop("known_from")
    fresh_revenue = pl.col("revenue_month") >= _day_month(pl.col("trade_date")) - REVENUE_MAX_AGE_MONTHS
    fresh_statement = pl.col("statement_quarter") >= _day_quarter(pl.col("trade_date")) - FINANCIALS_MAX_AGE_QUARTERS
    out = out.with_columns(
        [pl.when(fresh_revenue).then(pl.col(c)).alias(c) for c in ("revenue_yoy", "revenue_mom", "revenue_3m_yoy")]
        + [pl.when(fresh_statement).then(pl.col(c)).alias(c) for c in ("eps_ttm", "roe_ttm", "eps_yoy")]
    ).drop("revenue_month", "statement_quarter")
    return out.with_columns([pl.col(c).cast(pl.Float64) for c in FACTOR_COLUMNS]).sort("stock_id", "trade_date")
