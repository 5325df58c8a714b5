"""Data quality of indicator frames : pure evaluation, no Dagster.

Four rules, each checked per factor and per day over any number of days at once:

* missing_rate — share of the day's universe whose value is null/NaN, against the factor's declared
  `max_missing_rate`;
* coverage — share of the day's universe (listed, not suspended stocks in daily_quotes) that has a row;
* non_finite — no ±inf or NaN anywhere (a division that should have been guarded);
* out_of_range — finite values inside the factor's declared [min_value, max_value].

Every failure names the factor, the failing days and the worst stocks, so whoever is paged can look
at the right rows first. The Dagster checks (`checks.py`) only turn a `QualityReport` into results.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl

from qrl_platform.factors import Factor

KEYS = ("stock_id", "trade_date")
RULES = ("missing_rate", "coverage", "non_finite", "out_of_range")
# One row per universe stock is written by construction; anything less means a stale or partial frame.
MIN_COVERAGE = 0.99
WORST_STOCKS = 10


@dataclass(frozen=True)
class QualityIssue:
    """One rule failing for one factor (or for coverage, factor None) on one or more days."""

    rule: str
    factor: str | None
    dates: tuple[dt.date, ...]
    observed: float  # the worst observed rate / count / value
    threshold: str  # human-readable bound, e.g. "≤ 35.0%" or "[0, 100]"
    worst_stocks: tuple[tuple[str, str], ...]  # (stock_id, what is wrong with it)

    @property
    def message(self) -> str:
        what = self.factor or "universe"
        days = f"{self.dates[0]}" + (f" and {len(self.dates) - 1} more day(s)" if len(self.dates) > 1 else "")
        stocks = ", ".join(f"{sid} ({detail})" for sid, detail in self.worst_stocks) or "-"
        observed = {
            "missing_rate": f"missing for {self.observed:.1%} of the universe (allowed {self.threshold})",
            "coverage": f"coverage {self.observed:.1%} of the universe (required {self.threshold})",
            "non_finite": f"{int(self.observed)} non-finite value(s) (±inf/NaN)",
            "out_of_range": f"values outside {self.threshold} (worst {self.observed:g})",
        }[self.rule]
        return f"{self.rule}: {what} {observed} on {days}; worst stocks: {stocks}"

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "factor": self.factor,
            "dates": [d.isoformat() for d in self.dates],
            "observed": self.observed,
            "threshold": self.threshold,
            "worst_stocks": [{"stock_id": s, "detail": d} for s, d in self.worst_stocks],
        }


@dataclass
class QualityReport:
    dates: list[dt.date]  # open days evaluated
    closed_dates: list[dt.date]  # days with an empty universe (market closed): nothing to check
    missing_rates: pl.DataFrame  # trade_date, factor, missing_rate, max_missing_rate
    coverage: pl.DataFrame  # trade_date, universe, covered, coverage
    issues: list[QualityIssue] = field(default_factory=list)

    def failures(self, rule: str | None = None) -> list[QualityIssue]:
        return [i for i in self.issues if rule is None or i.rule == rule]

    def passed(self, rule: str | None = None) -> bool:
        return not self.failures(rule)

    def failing_factors(self, rule: str | None = None) -> list[str]:
        return sorted({i.factor for i in self.failures(rule) if i.factor is not None})


def universe(quotes: pl.DataFrame) -> pl.DataFrame:
    """The stocks each day's indicators must cover: listed (a daily_quotes row) and not suspended."""
    if "stock_id" not in quotes.columns or not quotes.height:
        return pl.DataFrame(schema={"stock_id": pl.Utf8, "trade_date": pl.Date})
    return quotes.filter(~pl.col("is_suspended").fill_null(False)).select(
        pl.col("stock_id").cast(pl.Utf8), pl.col("trade_date").cast(pl.Date)
    )


def _bad(column: str) -> pl.Expr:
    return pl.col(column).is_null() | pl.col(column).is_nan()


def missing_rates(frame: pl.DataFrame, quotes: pl.DataFrame, factors: tuple[Factor, ...]) -> pl.DataFrame:
    """Per day and factor: the share of universe stocks (with a row) whose value is null or NaN."""
    ids = [f.factor_id for f in factors]
    return _missing_rates(universe(quotes).join(_as_float(frame, ids), on=list(KEYS), how="inner"), factors)


def _missing_rates(rows: pl.DataFrame, factors: tuple[Factor, ...]) -> pl.DataFrame:
    ids = [f.factor_id for f in factors]
    if not rows.height:
        return pl.DataFrame(
            schema={
                "trade_date": pl.Date,
                "factor": pl.Utf8,
                "missing_rate": pl.Float64,
                "max_missing_rate": pl.Float64,
            }
        )
    wide = rows.group_by("trade_date").agg([_bad(c).mean().alias(c) for c in ids])
    limits = pl.DataFrame({"factor": ids, "max_missing_rate": [f.max_missing_rate for f in factors]})
    return (
        wide.unpivot(index="trade_date", variable_name="factor", value_name="missing_rate")
        .with_columns(pl.col("missing_rate").cast(pl.Float64))
        .join(limits, on="factor", how="left")
        .sort("trade_date", "factor")
    )


def _as_float(frame: pl.DataFrame, ids: list[str]) -> pl.DataFrame:
    """Keys plus every factor as Float64; a missing factor column counts as all-null."""
    if "stock_id" not in frame.columns:  # an empty read (nothing stored) has no columns at all
        return pl.DataFrame(schema={"stock_id": pl.Utf8, "trade_date": pl.Date, **dict.fromkeys(ids, pl.Float64)})
    present = set(frame.columns)
    return frame.select(
        pl.col("stock_id").cast(pl.Utf8),
        pl.col("trade_date").cast(pl.Date),
        *[(pl.col(c).cast(pl.Float64) if c in present else pl.lit(None, dtype=pl.Float64)).alias(c) for c in ids],
    )


def evaluate(
    frame: pl.DataFrame,
    quotes: pl.DataFrame,
    factors: tuple[Factor, ...],
    *,
    dates: list[dt.date] | None = None,
    min_coverage: float = MIN_COVERAGE,
    worst: int = WORST_STOCKS,
) -> QualityReport:
    """Evaluate every rule on indicator rows `frame` (any number of days) against `quotes` of the same days.

    `frame`: stock_id, trade_date and one column per factor (a missing column counts as all-null).
    `quotes`: daily_quotes rows (stock_id, trade_date, is_suspended) of the days to evaluate.
    `dates`: the days asked about (default: the days in `quotes`); a day without universe rows is a
    closed day and is skipped, not failed.
    """
    ids = [f.factor_id for f in factors]
    values = _as_float(frame, ids)
    uni = universe(quotes)
    if dates is not None:
        uni = uni.filter(pl.col("trade_date").is_in(dates))
    open_dates = sorted(uni["trade_date"].unique().to_list())
    if dates is not None:
        asked = set(dates)
    else:
        asked = set(quotes["trade_date"].to_list()) if "trade_date" in quotes.columns else set()
    closed = sorted(asked - set(open_dates))
    # Only the universe's days are judged: rows for days the quotes don't cover are out of scope.
    values = values.filter(pl.col("trade_date").is_in(open_dates))

    issues: list[QualityIssue] = []
    coverage = _coverage(uni, values)
    issues += _coverage_issues(coverage, uni, values, min_coverage, worst)
    rows = uni.join(values, on=list(KEYS), how="inner")
    rates = _missing_rates(rows, factors)
    issues += _missing_issues(rates, rows, worst)
    issues += _non_finite_issues(values, ids, worst)
    issues += _range_issues(values, factors, worst)
    return QualityReport(open_dates, closed, rates, coverage, issues)


def _coverage(uni: pl.DataFrame, values: pl.DataFrame) -> pl.DataFrame:
    marked = uni.join(values.select(*KEYS).with_columns(pl.lit(True).alias("_row")), on=list(KEYS), how="left")
    return (
        marked.group_by("trade_date")
        .agg(pl.len().alias("universe"), pl.col("_row").fill_null(False).sum().alias("covered"))
        .with_columns((pl.col("covered") / pl.col("universe")).alias("coverage"))
        .sort("trade_date")
    )


def _coverage_issues(coverage, uni, values, min_coverage, worst) -> list[QualityIssue]:
    failing = coverage.filter(pl.col("coverage") < min_coverage)
    if not failing.height:
        return []
    dates = failing["trade_date"].to_list()
    absent = (
        uni.filter(pl.col("trade_date").is_in(dates))
        .join(values.select(*KEYS), on=list(KEYS), how="anti")
        .group_by("stock_id")
        .agg(pl.len().alias("days"))
        .sort(["days", "stock_id"], descending=[True, False])
        .head(worst)
    )
    stocks = tuple((sid, f"no row on {n} of {len(dates)} day(s)") for sid, n in absent.iter_rows())
    return [
        QualityIssue("coverage", None, tuple(dates), float(failing["coverage"].min()), f"≥ {min_coverage:.1%}", stocks)
    ]


def _missing_issues(rates: pl.DataFrame, rows: pl.DataFrame, worst: int) -> list[QualityIssue]:
    failing = rates.filter(pl.col("missing_rate") > pl.col("max_missing_rate"))
    issues = []
    for factor in sorted(failing["factor"].unique().to_list()):
        per_day = failing.filter(pl.col("factor") == factor)
        dates = per_day["trade_date"].to_list()
        counts = (
            rows.filter(pl.col("trade_date").is_in(dates) & _bad(factor))
            .group_by("stock_id")
            .agg(pl.len().alias("days"))
            .sort(["days", "stock_id"], descending=[True, False])
            .head(worst)
        )
        stocks = tuple((sid, f"missing on {n} of {len(dates)} day(s)") for sid, n in counts.iter_rows())
        limit = per_day["max_missing_rate"][0]
        issues.append(
            QualityIssue(
                "missing_rate", factor, tuple(dates), float(per_day["missing_rate"].max()), f"≤ {limit:.1%}", stocks
            )
        )
    return issues


def _non_finite_issues(values: pl.DataFrame, ids: list[str], worst: int) -> list[QualityIssue]:
    if not values.height:
        return []
    non_finite = {c: pl.col(c).is_infinite() | pl.col(c).is_nan() for c in ids}
    counts = values.select([e.sum().alias(c) for c, e in non_finite.items()]).row(0, named=True)
    issues = []
    for factor in ids:
        if not counts[factor]:
            continue
        bad = values.filter(non_finite[factor]).sort("stock_id", "trade_date")
        per_stock = (
            bad.group_by("stock_id", maintain_order=True)
            .agg(pl.col("trade_date").first(), pl.col(factor).first(), pl.len().alias("n"))
            .sort(["n", "stock_id"], descending=[True, False])
            .head(worst)
        )
        stocks = tuple(
            (sid, f"{value} on {day}" + (f" and {n - 1} more day(s)" if n > 1 else ""))
            for sid, day, value, n in per_stock.iter_rows()
        )
        dates = tuple(sorted(bad["trade_date"].unique().to_list()))
        issues.append(QualityIssue("non_finite", factor, dates, float(counts[factor]), "finite", stocks))
    return issues


def _range_issues(values: pl.DataFrame, factors: tuple[Factor, ...], worst: int) -> list[QualityIssue]:
    issues = []
    for factor in factors:
        lo, hi = factor.min_value, factor.max_value
        if (lo is None and hi is None) or not values.height:
            continue
        col = pl.col(factor.factor_id)
        # How far outside the bounds a value lies; non-finite values belong to the non_finite rule.
        excess = pl.max_horizontal(
            (pl.lit(lo) - col) if lo is not None else pl.lit(0.0),
            (col - pl.lit(hi)) if hi is not None else pl.lit(0.0),
        )
        bad = values.filter(col.is_finite() & (excess > 0)).with_columns(excess.alias("_excess"))
        if not bad.height:
            continue
        per_stock = (
            bad.sort("_excess", descending=True)
            .group_by("stock_id", maintain_order=True)
            .agg(
                pl.col(factor.factor_id).first(),
                pl.col("trade_date").first(),
                pl.col("_excess").first(),
                pl.len().alias("n"),
            )
            .sort(["_excess", "stock_id"], descending=[True, False])
            .head(worst)
        )
        stocks = tuple(
            (sid, f"{value:g} on {day}" + (f" and {n - 1} more day(s)" if n > 1 else ""))
            for sid, value, day, _, n in per_stock.iter_rows()
        )
        bounds = f"[{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"
        dates = tuple(sorted(bad["trade_date"].unique().to_list()))
        issues.append(QualityIssue("out_of_range", factor.factor_id, dates, float(per_stock.row(0)[1]), bounds, stocks))
    return issues
