"""Fundamental factor definitions — the single registry entry for each factor this module computes.

`factor_metadata`, the blocking quality checks and the strategy validator all read these objects, so
a factor's description, unit and bounds are declared exactly once, here.

Missing-rate thresholds (share of the day's trading universe allowed to lack the factor) are set for
reality, not just the demo: ETFs (≈13 % of the listed universe in Taiwan, 2.5 % in the demo) file no
revenue or financial statements and have no PE/PB in BWIBBU; loss-makers (≈15–25 % of listed stocks)
have no PE and no meaningful EPS growth; new listings lack the year of history the YoY factors need.
"""

from __future__ import annotations

from qrl_platform.factors import Factor

MODULE = "M08"

# ETFs + new listings + the odd late filer.
_STATEMENT_MISSING = 0.25

FUNDAMENTAL_FACTORS: tuple[Factor, ...] = (
    Factor(
        factor_id="pe",
        module=MODULE,
        name="Price / earnings",
        description="The day's PE ratio as published by the exchange (TWSE BWIBBU / TPEx), close over trailing "
        "four-quarter EPS; null when earnings are negative (the exchange prints '-') and for ETFs.",
        unit="x",
        lookback=0,
        source_columns=("valuations.pe",),
        price_basis="raw",  # the exchange computes it from the unadjusted close
        min_value=0.0,
        # Loss-makers have no PE: ETFs (≈13 %) plus loss-makers (≈15–25 %) in reality.
        max_missing_rate=0.45,
        tags=("value",),
    ),
    Factor(
        factor_id="pb",
        module=MODULE,
        name="Price / book",
        description="The day's price-to-book ratio as published by the exchange (TWSE BWIBBU / TPEx).",
        unit="x",
        lookback=0,
        source_columns=("valuations.pb",),
        price_basis="raw",  # the exchange computes it from the unadjusted close
        min_value=0.0,
        max_missing_rate=_STATEMENT_MISSING,
        tags=("value",),
    ),
    Factor(
        factor_id="dividend_yield",
        module=MODULE,
        name="Dividend yield",
        description="The day's cash dividend yield as published by the exchange (last dividend / close).",
        unit="%",
        lookback=0,
        source_columns=("valuations.dividend_yield",),
        price_basis="raw",  # the exchange computes it from the unadjusted close
        # No upper bound: the yield is the last dividend over today's price, so a collapsed price sends
        # it past 100 % until the next (cut) dividend is announced — rare in reality, frequent in the demo.
        min_value=0.0,
        max_missing_rate=_STATEMENT_MISSING,
        tags=("value",),
    ),
    Factor(
        factor_id="eps_ttm",
        module=MODULE,
        name="EPS, trailing four quarters",
        description="Sum of the EPS of the latest four fiscal quarters published on or before the day "
        "(point in time: published_on, else the statutory deadline). Null unless all four are known and the "
        "latest is at most three quarters behind the day's quarter.",
        unit="TWD",
        lookback=0,
        source_columns=("financials.eps", "financials.published_on"),
        max_missing_rate=_STATEMENT_MISSING,
        tags=("quality",),
    ),
    Factor(
        factor_id="roe_ttm",
        module=MODULE,
        name="Return on equity, trailing four quarters",
        description="Net income of the latest four published fiscal quarters divided by the equity at the end "
        "of the latest published quarter, in percent (point in time). Null when equity ≤ 0.",
        unit="%",
        lookback=0,
        source_columns=("financials.net_income", "financials.equity", "financials.published_on"),
        max_missing_rate=_STATEMENT_MISSING,
        tags=("quality",),
    ),
    Factor(
        factor_id="eps_yoy",
        module=MODULE,
        name="EPS growth, year over year",
        description="Growth of the latest published quarter's EPS over the same quarter a year earlier, in "
        "percent: (eps / eps_year_ago − 1) × 100. Null when the year-ago EPS ≤ 0 (growth is meaningless).",
        unit="%",
        lookback=0,
        source_columns=("financials.eps", "financials.published_on"),
        # Loss-making bases are null by definition: ETFs + loss-makers + new listings.
        max_missing_rate=0.45,
        tags=("growth",),
    ),
    Factor(
        factor_id="revenue_yoy",
        module=MODULE,
        name="Monthly revenue growth, year over year",
        description="Latest published month's revenue vs the same month a year earlier, in percent "
        "(point in time: published_on, else the 10th of the next month). Null when the base ≤ 0.",
        unit="%",
        lookback=0,
        source_columns=("monthly_revenue.revenue", "monthly_revenue.published_on"),
        min_value=-100.0,  # revenue is never negative
        max_missing_rate=_STATEMENT_MISSING,
        tags=("growth",),
    ),
    Factor(
        factor_id="revenue_mom",
        module=MODULE,
        name="Monthly revenue growth, month over month",
        description="Latest published month's revenue vs the previous month's, in percent (point in time). "
        "Null when the base ≤ 0.",
        unit="%",
        lookback=0,
        source_columns=("monthly_revenue.revenue", "monthly_revenue.published_on"),
        min_value=-100.0,
        max_missing_rate=_STATEMENT_MISSING,
        tags=("growth",),
    ),
    Factor(
        factor_id="revenue_3m_yoy",
        module=MODULE,
        name="Three-month revenue growth, year over year",
        description="Revenue of the latest three published months vs the same three months a year earlier, "
        "in percent (point in time). Null unless all six months are known and the base > 0.",
        unit="%",
        lookback=0,
        source_columns=("monthly_revenue.revenue", "monthly_revenue.published_on"),
        min_value=-100.0,
        max_missing_rate=_STATEMENT_MISSING,
        tags=("growth",),
    ),
)
