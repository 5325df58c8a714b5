"""The QRL jobs: the quarter-hour cost/PnL + plan, and the plan alone."""

import dagster as dg

from qrl_platform.defs.job_tags import STEP_RETRY
from qrl_platform.defs.treasury.assets import qrl_position, rebalance_plan

# Two quarter hours' runs must not interleave: each plans and trades against the balances the other may
# be changing. The qrl_mexc pool serialises steps only, so the runs share one warehouse-writer group
# (a run-level limit in both dagster.yaml files).
TREASURY_TAGS = {"dagster/max_runtime_seconds": "600", "qrl/estimate_seconds": "30", "qrl/warehouse-writer": "qrl"}

qrl_15min_job = dg.define_asset_job(
    "qrl_15min_job",
    selection=[qrl_position, rebalance_plan],
    description="QRL cost/PnL then the rebalance plan for one quarter hour (the source's 15-min-job).",
    # Never longer than a period (max runtime). MEXC is reached one step at a time through the qrl_mexc pool.
    tags=TREASURY_TAGS,
    # Retrying a step cannot place a second order: each order's client id derives from the partition.
    op_retry_policy=STEP_RETRY,
)

qrl_rebalance_job = dg.define_asset_job(
    "qrl_rebalance_job",
    selection=[rebalance_plan],
    description="The rebalance plan alone (the source's standalone /tasks/rebalance/symmetric).",
    tags=TREASURY_TAGS,
    op_retry_policy=STEP_RETRY,
)

QRL_JOBS = [qrl_15min_job, qrl_rebalance_job]
