"""Fundamental factors on hand-worked cases, and point in time: a row published the day after D
must not change D's factors but must change D+1's."""

import datetime as dt

import polars as pl
import pytest

from qrl_platform.factors import fundamental
from qrl_platform.market import schema

D = dt.date(2024, 3, 7)  # Thursday
NEXT = dt.date(2024, 3, 8)  # Friday: the day the newest month / quarter is published


def _days(*dates: dt.date, stocks=("A",), pe=12.5, pb=1.5, dividend_yield=4.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "stock_id": [s for s in stocks for _ in dates],
            "trade_date": [d for _ in stocks for d in dates],
            "pe": [pe] * (len(stocks) * len(dates)),
            "pb": [pb] * (len(stocks) * len(dates)),
            "dividend_yield": [dividend_yield] * (len(stocks) * len(dates)),
        }
    )


def _revenue(rows: list[tuple]) -> pl.DataFrame:
    """rows: (stock_id, year_month, revenue, published_on or None)"""
    return schema.conform(
        "monthly_revenue",
        pl.DataFrame(rows, schema=["stock_id", "year_month", "revenue", "published_on"], orient="row"),
    )


def _financials(rows: list[tuple]) -> pl.DataFrame:
    """rows: (stock_id, fiscal_quarter, eps, net_income, equity, published_on or None)"""
    frame = pl.DataFrame(
        rows, schema=["stock_id", "fiscal_quarter", "eps", "net_income", "equity", "published_on"], orient="row"
    ).with_columns(pl.lit(0).alias("revenue"))
    return schema.conform("financials", frame)


REVENUE_A = [
    ("A", "2022-11", 70, dt.date(2022, 12, 9)),
    ("A", "2022-12", 80, dt.date(2023, 1, 9)),
    ("A", "2023-01", 100, dt.date(2023, 2, 9)),
    ("A", "2023-02", 100, dt.date(2023, 3, 9)),
    ("A", "2023-11", 90, dt.date(2023, 12, 8)),
    ("A", "2023-12", 110, dt.date(2024, 1, 9)),
    ("A", "2024-01", 120, dt.date(2024, 2, 7)),
    ("A", "2024-02", 150, NEXT),  # published the day after D
]

FINANCIALS_A = [
    ("A", "2022Q3", 2.0, 180, 900, dt.date(2022, 11, 10)),
    ("A", "2022Q4", 1.0, 100, 1000, dt.date(2023, 3, 20)),
    ("A", "2023Q1", 1.5, 150, 1100, dt.date(2023, 5, 10)),
    ("A", "2023Q2", 2.0, 200, 1200, dt.date(2023, 8, 10)),
    ("A", "2023Q3", 2.5, 250, 1300, dt.date(2023, 11, 10)),
    ("A", "2023Q4", 3.0, 300, 2000, NEXT),  # published the day after D
]


def _row(out: pl.DataFrame, stock: str, day: dt.date) -> dict:
    rows = out.filter((pl.col("stock_id") == stock) & (pl.col("trade_date") == day)).to_dicts()
    assert len(rows) == 1
    return rows[0]


def test_revenue_factors_hand_worked():
    out = fundamental.compute(_days(D, NEXT), _revenue(REVENUE_A), _financials(FINANCIALS_A))
    on_d = _row(out, "A", D)  # latest known month: 2024-01
    assert on_d["revenue_yoy"] == pytest.approx((120 / 100 - 1) * 100)  # vs 2023-01
    assert on_d["revenue_mom"] == pytest.approx((120 / 110 - 1) * 100)  # vs 2023-12
    assert on_d["revenue_3m_yoy"] == pytest.approx(((120 + 110 + 90) / (100 + 80 + 70) - 1) * 100)  # 28 %
    on_next = _row(out, "A", NEXT)  # 2024-02 is public now
    assert on_next["revenue_yoy"] == pytest.approx(50.0)
    assert on_next["revenue_mom"] == pytest.approx(25.0)
    assert on_next["revenue_3m_yoy"] == pytest.approx(((150 + 120 + 110) / (100 + 100 + 80) - 1) * 100)


def test_statement_factors_hand_worked():
    out = fundamental.compute(_days(D, NEXT), _revenue(REVENUE_A), _financials(FINANCIALS_A))
    on_d = _row(out, "A", D)  # latest known quarter: 2023Q3
    assert on_d["eps_ttm"] == pytest.approx(2.5 + 2.0 + 1.5 + 1.0)
    assert on_d["roe_ttm"] == pytest.approx((250 + 200 + 150 + 100) / 1300 * 100)
    assert on_d["eps_yoy"] == pytest.approx((2.5 / 2.0 - 1) * 100)  # vs 2022Q3
    on_next = _row(out, "A", NEXT)  # 2023Q4 is public now
    assert on_next["eps_ttm"] == pytest.approx(3.0 + 2.5 + 2.0 + 1.5)
    assert on_next["roe_ttm"] == pytest.approx((300 + 250 + 200 + 150) / 2000 * 100)
    assert on_next["eps_yoy"] == pytest.approx(200.0)  # 3.0 vs 1.0


def test_valuations_pass_through_and_output_shape():
    days = _days(NEXT, D, stocks=("B", "A"))
    out = fundamental.compute(days, _revenue(REVENUE_A), _financials(FINANCIALS_A))
    assert out.height == days.height
    assert out.select("stock_id", "trade_date").rows() == [("A", D), ("A", NEXT), ("B", D), ("B", NEXT)]
    assert all(out.schema[c] == pl.Float64 for c in fundamental.FACTOR_COLUMNS)
    assert _row(out, "A", D)["pe"] == 12.5 and _row(out, "A", D)["pb"] == 1.5
    assert _row(out, "A", D)["dividend_yield"] == 4.0
    # B has no revenue and no statements: null, not zero.
    b = _row(out, "B", NEXT)
    assert all(b[c] is None for c in ("eps_ttm", "roe_ttm", "eps_yoy", "revenue_yoy", "revenue_mom", "revenue_3m_yoy"))


def test_point_in_time_row_published_the_day_after_does_not_leak_into_d():
    without = fundamental.compute(
        _days(D), _revenue(REVENUE_A[:-1]), _financials(FINANCIALS_A[:-1])
    )  # the world as it was on D
    with_next = fundamental.compute(_days(D, NEXT), _revenue(REVENUE_A), _financials(FINANCIALS_A))
    assert _row(with_next, "A", D) == _row(without, "A", D)
    changed = [c for c in fundamental.FACTOR_COLUMNS if _row(with_next, "A", NEXT)[c] != _row(with_next, "A", D)[c]]
    assert set(changed) >= {"eps_ttm", "roe_ttm", "eps_yoy", "revenue_yoy", "revenue_mom", "revenue_3m_yoy"}


def test_missing_published_on_falls_back_to_statutory_deadlines():
    revenue = [r if r[1] != "2024-02" else ("A", "2024-02", 150, None) for r in REVENUE_A]
    statements = [r if r[1] != "2023Q4" else ("A", "2023Q4", 3.0, 300, 2000, None) for r in FINANCIALS_A]
    days = [dt.date(2024, 3, 8), dt.date(2024, 3, 11), dt.date(2024, 3, 29), dt.date(2024, 4, 1)]
    out = fundamental.compute(_days(*days), _revenue(revenue), _financials(statements))
    # February revenue counts from March 10 (a Sunday): the next trading day sees it.
    assert _row(out, "A", dt.date(2024, 3, 8))["revenue_yoy"] == pytest.approx(20.0)
    assert _row(out, "A", dt.date(2024, 3, 11))["revenue_yoy"] == pytest.approx(50.0)
    # Q4 (annual report) counts from March 31 next year.
    assert _row(out, "A", dt.date(2024, 3, 29))["eps_ttm"] == pytest.approx(7.0)
    assert _row(out, "A", dt.date(2024, 4, 1))["eps_ttm"] == pytest.approx(9.0)


def test_each_period_counts_only_from_its_own_publication():
    # January is filed late (after February): on Feb's publication day MoM has no known base yet.
    revenue = [r if r[1] != "2024-01" else ("A", "2024-01", 120, dt.date(2024, 3, 20)) for r in REVENUE_A]
    days = [NEXT, dt.date(2024, 3, 20)]
    out = fundamental.compute(_days(*days), _revenue(revenue), _financials(FINANCIALS_A))
    assert _row(out, "A", NEXT)["revenue_yoy"] == pytest.approx(50.0)
    assert _row(out, "A", NEXT)["revenue_mom"] is None
    assert _row(out, "A", NEXT)["revenue_3m_yoy"] is None
    assert _row(out, "A", dt.date(2024, 3, 20))["revenue_mom"] == pytest.approx(25.0)


def test_growth_is_null_when_the_base_is_not_positive():
    revenue = [
        ("C", "2023-02", 0, dt.date(2023, 3, 9)),
        ("C", "2024-01", 50, dt.date(2024, 2, 7)),
        ("C", "2024-02", 60, dt.date(2024, 3, 6)),
    ]
    statements = [
        ("C", "2022Q4", -0.5, -50, 1000, dt.date(2023, 3, 20)),
        ("C", "2023Q1", 0.2, 20, 1000, dt.date(2023, 5, 10)),
        ("C", "2023Q2", 0.2, 20, 1000, dt.date(2023, 8, 10)),
        ("C", "2023Q3", 0.2, 20, 0, dt.date(2023, 11, 10)),
        ("C", "2023Q4", 0.4, 40, 1000, dt.date(2024, 3, 1)),
    ]
    before_q4 = dt.date(2024, 2, 29)
    out = fundamental.compute(_days(before_q4, D, stocks=("C",)), _revenue(revenue), _financials(statements))
    assert _row(out, "C", before_q4)["roe_ttm"] is None  # latest known equity (2023Q3) is 0
    assert _row(out, "C", before_q4)["eps_ttm"] == pytest.approx(0.2 + 0.2 + 0.2 - 0.5)
    row = _row(out, "C", D)
    assert row["revenue_yoy"] is None  # 2023-02 revenue was 0
    assert row["revenue_mom"] == pytest.approx(20.0)
    assert row["eps_yoy"] is None  # 2022Q4 EPS was negative
    assert row["eps_ttm"] == pytest.approx(0.4 + 0.2 + 0.2 + 0.2)
    assert row["roe_ttm"] == pytest.approx((40 + 20 + 20 + 20) / 1000 * 100)


def test_incomplete_or_stale_history_gives_null():
    revenue = [("E", "2023-05", 100, dt.date(2023, 6, 9)), ("E", "2022-05", 80, dt.date(2022, 6, 9))]
    statements = [  # 2023Q2 missing: no trailing four quarters
        ("E", "2023Q1", 1.0, 10, 100, dt.date(2023, 5, 10)),
        ("E", "2023Q3", 1.0, 10, 100, dt.date(2023, 11, 10)),
        ("E", "2023Q4", 1.0, 10, 100, dt.date(2024, 3, 1)),
        ("E", "2024Q1", 1.0, 10, 100, dt.date(2024, 5, 10)),
        *[("F", f"2022Q{q}", 1.0, 10, 100, dt.date(2023, 3, 1)) for q in (1, 2, 3, 4)],  # then nothing
    ]
    early, late = dt.date(2023, 6, 12), dt.date(2024, 5, 13)
    out = fundamental.compute(_days(early, late, stocks=("E", "F")), _revenue(revenue), _financials(statements))
    assert _row(out, "F", early)["eps_ttm"] == pytest.approx(4.0)
    assert _row(out, "F", late)["eps_ttm"] is None  # latest quarter 2022Q4 is six quarters old
    assert _row(out, "E", early)["revenue_yoy"] == pytest.approx(25.0)
    assert _row(out, "E", late)["revenue_yoy"] is None  # latest month is 2023-05: stopped reporting
    assert _row(out, "E", late)["eps_ttm"] is None
    assert _row(out, "E", late)["roe_ttm"] is None


def test_history_window_covers_what_the_factors_can_reach():
    window = fundamental.history_window(dt.date(2024, 3, 7), dt.date(2024, 3, 8))
    # Latest month may be 3 behind March (Dec), 3m YoY reaches 14 behind that (Oct two years earlier).
    assert window["monthly_revenue"] == (dt.date(2022, 10, 1), dt.date(2024, 3, 1))
    # Latest quarter may be 3 behind 2024Q1 (2023Q2), YoY reaches 4 behind that (2022Q2).
    assert window["financials"] == (dt.date(2022, 4, 1), dt.date(2024, 1, 1))


def test_empty_periodic_inputs_give_null_statement_factors():
    out = fundamental.compute(_days(D), pl.DataFrame(), pl.DataFrame())
    row = _row(out, "A", D)
    assert row["pe"] == 12.5 and row["eps_ttm"] is None and row["revenue_yoy"] is None
