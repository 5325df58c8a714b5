"""JOB-M11-002: tell the order module the day's signals are ready."""

import dagster as dg

from qrl_platform.defs.job_tags import STEP_RETRY, job_tags

notify_m13_job = dg.define_asset_job(
    "notify_m13_job",
    selection=dg.AssetSelection.assets("m13_notification"),
    description="JOB-M11-002 (16:45): publish STRATEGY_SIGNALS_READY to the order module if the day has unconsumed signals.",
    tags=job_tags(estimate_seconds=30),
    op_retry_policy=STEP_RETRY,
)
