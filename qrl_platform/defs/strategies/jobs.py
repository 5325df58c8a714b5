"""JOB-M11-001 (strategies) and JOB-M11-003 (stats)."""

import dagster as dg

from qrl_platform.defs.job_tags import STEP_RETRY, job_tags

strategies_job = dg.define_asset_job(
    "strategies_job",
    selection=dg.AssetSelection.assets("strategy_signals"),
    description="JOB-M11-001 (16:35): run every ACTIVE strategy once the indicators passed their blocking checks.",
    tags=job_tags(estimate_seconds=60, warehouse_writer="strategy_signals"),
    op_retry_policy=STEP_RETRY,
)
strategy_stats_job = dg.define_asset_job(
    "strategy_stats_job",
    selection=dg.AssetSelection.assets("strategy_stats"),
    description="JOB-M11-003 (17:00): per-strategy statistics and hit rates.",
    tags=job_tags(estimate_seconds=60),
    op_retry_policy=STEP_RETRY,
)
