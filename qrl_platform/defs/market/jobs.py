"""Jobs that ingest the raw market tables (S4) and compute the indicators of the day with them."""

import dagster as dg

from qrl_platform.defs.job_tags import INDICATORS, RAW_DAILY, STEP_RETRY, job_tags

daily_market_job = dg.define_asset_job(
    "daily_market_job",
    selection=dg.AssetSelection.assets(*RAW_DAILY, *INDICATORS),
    description="16:00 trading days: ingest TWSE/TPEx (quotes, institutional flows, margin, valuations) and "
    "compute M07/M08/M09 with their blocking quality checks.",
    tags=job_tags(estimate_seconds=180, exchange="twse-tpex"),
    op_retry_policy=STEP_RETRY,
)
monthly_revenue_job = dg.define_asset_job(
    "monthly_revenue_job",
    selection=dg.AssetSelection.assets("monthly_revenue"),
    tags=job_tags(120, exchange="twse-tpex"),
    op_retry_policy=STEP_RETRY,
)
financials_job = dg.define_asset_job(
    "financials_job",
    selection=dg.AssetSelection.assets("financials"),
    tags=job_tags(120, exchange="twse-tpex"),
    op_retry_policy=STEP_RETRY,
)
shareholding_job = dg.define_asset_job(
    "shareholding_job",
    selection=dg.AssetSelection.assets("shareholding_distribution"),
    tags=job_tags(120, exchange="twse-tpex"),
    op_retry_policy=STEP_RETRY,
)
