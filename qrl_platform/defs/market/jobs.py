"""Jobs that ingest the raw market tables and compute the indicators of the day with them.

Two ways the day's market data comes in:
* `market_data_available_sensor` (defs/market/sensors.py) launches one job per table as soon as the
  publication timetable says that table is out (`ingest_<table>_job`) and one job per indicator once
  its inputs are stored (`<indicator>_job`), so a late table never blocks or fails the others;
* the 16:00 `daily_market_schedule` (defs/daily_flow) runs `daily_market_job`, a backstop over the
  tables out by 16:00 and the three indicator assets. margin_balances (out ~21:00, QRL_PUBLISH_MARGIN_BALANCES) is not
  in it: at 16:00 it is never out, and the chip indicators of day D read the margin of D-1 (the margin lag), which the
  sensor stored the evening before.

The monthly, quarterly and weekly tables come in by their own schedules (defs/market/schedules.py), each
launching its table's `<stem>_job`; like the per-table jobs, these are built from the declarations.
"""

from collections.abc import Iterable

import dagster as dg

from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY, STEP_RETRY, job_tags
from qrl_platform.market import tables

# The tables whose declaration puts them in the 16:00 backstop (out by then on the day).
RAW_BY_1600 = list(tables.names(in_backstop=True))

daily_market_job = dg.define_asset_job(
    "daily_market_job",
    selection=dg.AssetSelection.assets(*RAW_BY_1600, "tradability", *INDICATORS),
    description=f"16:00 trading days: ingest {', '.join(RAW_BY_1600)}, "
    "derive tradability (price limits, suspensions, disposition) and compute "
    "the technical, fundamental and chip indicators with their blocking quality checks (margin_balances comes in the evening via "
    "market_data_available_sensor; the chip indicators of D use the margin of D-1).",
    tags=job_tags(estimate_seconds=180),
    op_retry_policy=STEP_RETRY,
)


def _table_job(table: str):
    return dg.define_asset_job(
        f"ingest_{table}_job",
        selection=dg.AssetSelection.assets(table),
        description=f"Ingest {table} for one trading day (launched by market_data_available_sensor when due).",
        tags=job_tags(estimate_seconds=60),
        op_retry_policy=STEP_RETRY,
    )


def _indicator_job(asset: str):
    return dg.define_asset_job(
        f"{asset}_job",
        selection=dg.AssetSelection.assets(asset),  # includes the asset's quality checks
        description=f"Compute {asset} for one trading day once its inputs are stored (market_data_available_sensor).",
        tags=job_tags(estimate_seconds=60),
        op_retry_policy=STEP_RETRY,
    )


# `ingest_<table>_job` of every trading-day table.
TABLE_JOBS = {table: _table_job(table) for table in RAW_DAILY}
TABLE_JOB_LIST = list(TABLE_JOBS.values())  # what the definitions loader collects (it reads lists, not dicts)
# `<family>_job` of every declared indicator family.
INDICATOR_JOBS = {asset: _indicator_job(asset) for asset in INDICATORS}
INDICATOR_JOB_LIST = list(INDICATOR_JOBS.values())


def periodic_jobs(raw: Iterable[tables.RawTable]) -> dict:
    """`<stem>_job` of every slower-cadence table in `raw`, by table (its schedule launches it)."""
    return {
        table.name: dg.define_asset_job(
            f"{table.schedule.stem}_job",
            selection=dg.AssetSelection.assets(table.name),
            tags=job_tags(120),
            op_retry_policy=STEP_RETRY,
        )
        for table in raw
        if table.schedule is not None
    }


# `<stem>_job` of every monthly, quarterly and weekly table (monthly_revenue_job, financials_job, shareholding_job).
PERIODIC_JOBS = periodic_jobs(tables.RAW)
PERIODIC_JOB_LIST = list(PERIODIC_JOBS.values())
