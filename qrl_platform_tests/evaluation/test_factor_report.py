"""The rolling factor report on a hand-checkable frame: only rows known by the as-of day count."""

import datetime as dt
import math

import polars as pl
import pytest

from qrl_platform.evaluation.factor_ic import IC_SCHEMA, QUANTILE_SCHEMA, TURNOVER_SCHEMA
from qrl_platform.evaluation.factor_report import best_and_worst, factor_report

DAYS = [dt.date(2024, 5, d) for d in (6, 7, 8, 9, 10, 13)]


def _ics(rows):
    return pl.DataFrame(rows, schema=IC_SCHEMA, orient="row")


def test_ic_statistics_direction_and_quantile_spread():
    # ret_20 at h=20 (known 20 days later: here just a later day), four ICs known inside the window.
    ics = _ics(
        [
            (DAYS[2], DAYS[0], 20, "ret_20", 0.10, 0.08, 100),
            (DAYS[3], DAYS[1], 20, "ret_20", -0.02, -0.01, 100),
            (DAYS[4], DAYS[2], 20, "ret_20", 0.04, 0.05, 100),
            (DAYS[5], DAYS[3], 20, "ret_20", 0.08, 0.02, 100),  # known after the as-of day: left out
            (DAYS[4], DAYS[3], 20, "pe", -0.05, -0.04, 90),
            (DAYS[3], DAYS[2], 20, "pe", -0.03, None, 90),
            (DAYS[4], DAYS[3], 5, "pe", None, None, 0),  # undefined IC: not a day of evidence
        ]
    )
    quantiles = pl.DataFrame(
        [(DAYS[4], DAYS[2], 20, "ret_20", q, 0.01 * q, 20) for q in range(1, 6)], schema=QUANTILE_SCHEMA, orient="row"
    )
    turnover = pl.DataFrame([(DAYS[4], "ret_20", 0.2, 0.4, 0.9)], schema=TURNOVER_SCHEMA, orient="row")
    report = factor_report(ics, quantiles, turnover, DAYS, DAYS[4], windows=(3,))
    row = report.filter((pl.col("factor_id") == "ret_20") & (pl.col("horizon") == 20)).row(0, named=True)
    values = [0.10, -0.02, 0.04]
    mean = sum(values) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert row["days"] == 3 and row["mean_ic"] == pytest.approx(mean)
    assert row["ic_std"] == pytest.approx(std) and row["icir"] == pytest.approx(mean / std)
    assert row["t_stat"] == pytest.approx(mean / std * math.sqrt(3))
    assert row["positive_share"] == pytest.approx(2 / 3) and row["direction"] == "higher"
    assert row["evidence_since"] == DAYS[0] and row["window_start"] == DAYS[2]
    assert (row["q1"], row["q5"], row["spread"]) == pytest.approx((0.01, 0.05, 0.04))
    assert (row["top_turnover"], row["rank_autocorrelation"]) == (0.2, 0.9)
    pe = report.filter(pl.col("factor_id") == "pe")
    assert pe.filter(pl.col("horizon") == 20)["direction"][0] == "lower"
    assert pe.filter(pl.col("horizon") == 5).is_empty()
    ranked = best_and_worst(report, window=3, horizon=20, count=1)
    assert ranked.select("rank_group", "factor_id").rows() == [("best", "ret_20"), ("worst", "pe")]
