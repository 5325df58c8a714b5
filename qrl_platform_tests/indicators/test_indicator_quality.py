"""Indicator data quality: every failure names the rule, the factor, the days and the worst stocks."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.factors import Factor, quality

D1, D2 = dt.date(2024, 3, 4), dt.date(2024, 3, 5)
STOCKS = [f"S{i:02d}" for i in range(20)]

PCT = Factor(
    "pct", "M09", "pct", "a percentage", "%", 0, ("x",), min_value=-100.0, max_value=100.0, max_missing_rate=0.1
)
RATIO = Factor("ratio", "M08", "ratio", "a ratio", "x", 0, ("y",), min_value=0.0, max_missing_rate=0.2)
FACTORS = (PCT, RATIO)


def _quotes(dates=(D1, D2), suspended=()) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "stock_id": [s for _ in dates for s in STOCKS],
            "trade_date": [d for d in dates for _ in STOCKS],
            "is_suspended": [s in suspended for _ in dates for s in STOCKS],
        }
    )


def _frame(dates=(D1, D2), pct=1.0, ratio=2.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "stock_id": [s for _ in dates for s in STOCKS],
            "trade_date": [d for d in dates for _ in STOCKS],
            "pct": [pct] * len(dates) * len(STOCKS),
            "ratio": [ratio] * len(dates) * len(STOCKS),
        }
    )


def _set(frame: pl.DataFrame, column: str, value, stocks, dates=(D1, D2)) -> pl.DataFrame:
    hit = pl.col("stock_id").is_in(list(stocks)) & pl.col("trade_date").is_in(list(dates))
    return frame.with_columns(
        pl.when(hit).then(pl.lit(value, dtype=pl.Float64)).otherwise(pl.col(column)).alias(column)
    )


def test_clean_frame_passes_every_rule():
    report = quality.evaluate(_frame(), _quotes(), FACTORS)
    assert report.passed() and report.dates == [D1, D2]
    assert report.coverage["coverage"].to_list() == [1.0, 1.0]
    assert report.missing_rates.filter(pl.col("missing_rate") > 0).height == 0


def test_missing_rate_over_threshold_names_factor_days_and_worst_stocks():
    # pct: 3 of 20 missing on D1 (15 % > 10 %), only S05 on D2 (5 %); ratio: 3 of 20 is within its 20 %.
    frame = _set(_frame(), "pct", None, ["S05", "S06", "S07"], dates=[D1])
    frame = _set(frame, "pct", None, ["S05"], dates=[D2])
    frame = _set(frame, "ratio", None, ["S01", "S02", "S03"], dates=[D1])
    report = quality.evaluate(frame, _quotes(), FACTORS)
    [issue] = report.failures("missing_rate")
    assert issue.factor == "pct" and issue.dates == (D1,)
    assert issue.observed == pytest.approx(0.15)
    assert [s for s, _ in issue.worst_stocks] == ["S05", "S06", "S07"]
    assert "pct missing for 15.0% of the universe (allowed ≤ 10.0%) on 2024-03-04" in issue.message
    assert "S05 (missing on 1 of 1 day(s))" in issue.message
    assert report.failing_factors() == ["pct"]


def test_worst_stocks_over_a_range_are_the_most_often_missing():
    frame = _set(_frame(), "pct", None, ["S01", "S02", "S03"], dates=[D1])
    frame = _set(frame, "pct", None, ["S02", "S09", "S10"], dates=[D2])
    [issue] = quality.evaluate(frame, _quotes(), FACTORS).failures("missing_rate")
    assert issue.dates == (D1, D2)
    assert issue.worst_stocks[0] == ("S02", "missing on 2 of 2 day(s)")
    assert "and 1 more day(s)" in issue.message


def test_nan_counts_as_missing_and_suspended_stocks_are_outside_the_universe():
    frame = _set(_frame(), "pct", float("nan"), ["S01", "S02"])
    frame = _set(frame, "pct", None, ["S11", "S12", "S13"])  # suspended: no value expected
    report = quality.evaluate(frame, _quotes(suspended={"S11", "S12", "S13"}), FACTORS)
    assert (
        report.missing_rates.filter(pl.col("factor") == "pct")["missing_rate"].to_list() == [pytest.approx(2 / 17)] * 2
    )
    assert [i.factor for i in report.failures("missing_rate")] == ["pct"]


def test_coverage_below_the_universe_names_the_absent_stocks():
    frame = _frame().filter(~((pl.col("stock_id") == "S19") & (pl.col("trade_date") == D2)))
    report = quality.evaluate(frame, _quotes(), FACTORS)
    [issue] = report.failures("coverage")
    assert issue.factor is None and issue.dates == (D2,)
    assert issue.observed == pytest.approx(19 / 20)
    assert issue.worst_stocks == (("S19", "no row on 1 of 1 day(s)"),)
    assert "coverage 95.0% of the universe (required ≥ 99.0%) on 2024-03-05" in issue.message
    # A suspended stock without a row is not a coverage gap.
    assert quality.evaluate(frame, _quotes(suspended={"S19"}), FACTORS).passed("coverage")


def test_a_day_with_no_stored_frame_fails_coverage_and_a_closed_day_is_skipped():
    report = quality.evaluate(_frame(dates=[D1]), _quotes(), FACTORS)
    [issue] = report.failures("coverage")
    assert issue.dates == (D2,) and issue.observed == 0.0
    empty_day = quality.evaluate(_frame(dates=[]), _quotes(dates=[]), FACTORS)
    assert empty_day.passed() and empty_day.dates == []


def test_infinities_name_factor_value_and_stock():
    frame = _set(_frame(), "ratio", float("inf"), ["S03"], dates=[D2])
    frame = _set(frame, "ratio", float("-inf"), ["S04"], dates=[D1, D2])
    report = quality.evaluate(frame, _quotes(), FACTORS)
    [issue] = report.failures("non_finite")
    assert issue.factor == "ratio" and issue.observed == 3
    assert issue.worst_stocks[0] == ("S04", "-inf on 2024-03-04 and 1 more day(s)")
    assert ("S03", "inf on 2024-03-05") in issue.worst_stocks
    # Infinities are the non_finite rule's business, not out_of_range's (ratio has min 0).
    assert report.passed("out_of_range")


def test_values_out_of_declared_range_name_the_most_extreme_stocks_first():
    frame = _set(_frame(), "pct", 150.0, ["S07"], dates=[D1])
    frame = _set(frame, "pct", -400.0, ["S08"], dates=[D2])
    frame = _set(frame, "ratio", -0.5, ["S09"])
    report = quality.evaluate(frame, _quotes(), FACTORS)
    issues = {i.factor: i for i in report.failures("out_of_range")}
    assert set(issues) == {"pct", "ratio"}
    assert [s for s, _ in issues["pct"].worst_stocks] == ["S08", "S07"]
    assert issues["pct"].observed == -400.0 and issues["pct"].threshold == "[-100, 100]"
    assert issues["ratio"].worst_stocks == (("S09", "-0.5 on 2024-03-04 and 1 more day(s)"),)
    assert "out_of_range: pct values outside [-100, 100] (worst -400)" in issues["pct"].message
    assert report.passed("missing_rate") and report.passed("coverage")


def test_worst_stocks_are_limited():
    frame = _set(_frame(), "pct", None, STOCKS)
    [issue] = quality.evaluate(frame, _quotes(), FACTORS, worst=5).failures("missing_rate")
    assert len(issue.worst_stocks) == 5 and issue.observed == 1.0


def test_missing_factor_column_counts_as_all_missing():
    report = quality.evaluate(_frame().drop("ratio"), _quotes(), FACTORS)
    assert report.failing_factors("missing_rate") == ["ratio"]
