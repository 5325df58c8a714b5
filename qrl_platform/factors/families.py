"""One declaration per indicator family: the single place an indicator asset is described.

A family is data, not code: the asset that stores it, the desk's module code (the `module` tag and
the factors' `module`), its Dagster group, the extra trading days of lookback beyond its longest
factor, how far back it reads each slower-cadence table, and its description. What it *reads* is not
written here a second time: the daily raw tables come from its factors' `source_columns` (plus
`daily_quotes`, the universe of every family), their lookback from the factors' `lookback`, and a
lagged table's day from the factors' `lag_days` (`compute_range` derives all three).

Everything else is built from `FAMILIES`: the registry's module names, the assets with their deps,
groups, tags and descriptions, the quality checks, the per-family jobs, the market sensor's inputs of a
day, `qrl status` and the strategies' inputs. Adding a family means one entry here, its factors
(`<family>/factors.py`), its maths (`<family>/indicators.py`) and its entry in `compute_range.COMPUTE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qrl_platform.factors.chip import CHIP_FACTORS
from qrl_platform.factors.chip.indicators import SHAREHOLDING_HISTORY_DAYS
from qrl_platform.factors.factor import Factor
from qrl_platform.factors.fundamental import FUNDAMENTAL_FACTORS
from qrl_platform.factors.fundamental.indicators import FINANCIALS_HISTORY_QUARTERS, REVENUE_HISTORY_MONTHS
from qrl_platform.factors.technical import TECHNICAL_FACTORS

MEAN_MONTH_DAYS = 30.44
MEAN_QUARTER_DAYS = 91.31

# Technical windows count *traded* bars: a stock suspended for a few days in the last year needs that
# many more trading days to fill sma_240. Ten extra days (≈250 in all) keep the usual short suspensions
# from pushing long-window factors back into warm-up on a one-day run.
TECHNICAL_SLACK_DAYS = 10


@dataclass(frozen=True)
class IndicatorFamily:
    asset: str  # the asset (and frame-store table) that stores the family's factors
    module: str  # the desk's module code: the factors' `module` and the asset's `module` tag
    group: str  # Dagster asset group, and the family's short name ("technical")
    factors: tuple[Factor, ...]  # its factors, in column order (each declares its sources and lookback)
    description: str  # the asset's description; "{lookback}" becomes its daily lookback in trading days
    lookback_slack: int = 0  # trading days read beyond the longest factor's lookback
    # daily tables read over the same window when stored, not required (no event: nothing to adjust)
    reads_when_stored: tuple[str, ...] = ()
    # calendar days before day D that it reads of each slower-cadence table (lineage and planning)
    periodic_windows: dict[str, float] = field(default_factory=dict)


FAMILIES: tuple[IndicatorFamily, ...] = (
    IndicatorFamily(
        asset="technical_indicators",
        module="M07",
        group="technical",
        factors=TECHNICAL_FACTORS,
        description="M07 technical indicators (TA-Lib definitions + Taiwan KD): one row per stock in the day's "
        "daily_quotes, one Float64 column per factor. Reads daily_quotes for the day and the {lookback} "
        "trading days before it.",
        lookback_slack=TECHNICAL_SLACK_DAYS,
        reads_when_stored=("corporate_actions",),  # the adjusted bars' events
    ),
    IndicatorFamily(
        asset="fundamental_indicators",
        module="M08",
        group="fundamental",
        factors=FUNDAMENTAL_FACTORS,
        description="M08 fundamental indicators (PE/PB/yield, EPS TTM, ROE TTM, EPS and revenue growth), point in "
        "time: day D uses only revenue and financials published on or before D. One row per stock in the "
        f"day's daily_quotes. Reads the day's valuations and ~{REVENUE_HISTORY_MONTHS} months of revenue / "
        f"{FINANCIALS_HISTORY_QUARTERS} quarters of financials.",
        periodic_windows={
            "monthly_revenue": (REVENUE_HISTORY_MONTHS + 1) * MEAN_MONTH_DAYS,
            "financials": (FINANCIALS_HISTORY_QUARTERS + 1) * MEAN_QUARTER_DAYS,
        },
    ),
    IndicatorFamily(
        asset="chip_indicators",
        module="M09",
        group="chip",
        factors=CHIP_FACTORS,
        description="M09 chip indicators (foreign/trust/dealer net buy % of volume, trust buy streak, margin "
        "utilisation, 券資比, margin changes, big-holder share): one row per stock in the day's daily_quotes. "
        "Reads flows, margin and quotes for the day and the {lookback} trading days before it, and the latest "
        "TDCC weeks.",
        periodic_windows={"shareholding_distribution": SHAREHOLDING_HISTORY_DAYS},
    ),
)

BY_ASSET: dict[str, IndicatorFamily] = {family.asset: family for family in FAMILIES}
ASSETS: tuple[str, ...] = tuple(BY_ASSET)
