"""The sensors that launch the daily flow's stages (strategies, the order-module notification, stats)
when their automation condition (conditions.py) becomes true for today's partition.

One sensor per stage, so that each stage can be paused on its own (the three-failures rule of the
run-failure sensor stops the failing stage's sensor). Each runs in the code server because the market
calendar is a custom condition, and gives its runs the tags of the stage's named job (duration
estimate, warehouse-writer queue tag, `dagster/max_retries`) plus `qrl/stage`, the job they stand
for: the monitoring sensors read both.

The runs are Dagster's implicit asset job, not the named job, so the named job's step retry policy
does not apply to them; an asset-level retry policy would, but it would also override every job's
own policy (the outage tests give the named jobs a test-sized one). A failed stage run is therefore
retried as a run, from the failed step, by Dagster's run-retry daemon (`dagster/max_retries` with
`dagster/retry_on_asset_or_op_failure`); the condition itself never requests a day twice.
"""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.defs.daily_flow.conditions import NOTIFICATION, STATS, STRATEGIES, DailyStage
from qrl_platform.defs.job_tags import STAGE_TAG
from qrl_platform.defs.notify.jobs import notify_m13_job
from qrl_platform.defs.strategies.jobs import strategies_job, strategy_stats_job

# The job whose tags a stage's automated runs carry (the same job a person launches by hand).
STAGE_JOBS = ((STRATEGIES, strategies_job), (NOTIFICATION, notify_m13_job), (STATS, strategy_stats_job))

# Run retries for a failed step too (the deployment's default retries crashed runs only), resumed
# from the failed step so a stage's finished steps are not repeated.
RETRY_FAILED_STEPS = {"dagster/retry_on_asset_or_op_failure": "true", "dagster/retry_strategy": "FROM_FAILURE"}


def stage_sensor_name(job_name: str) -> str:
    return f"{job_name.removesuffix('_job')}_automation"


def _stage_sensor(stage: DailyStage, job) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        stage_sensor_name(job.name),
        target=dg.AssetSelection.assets(stage.asset),
        run_tags={**job.tags, **RETRY_FAILED_STEPS, STAGE_TAG: job.name},
        use_user_code_server=True,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"{stage.at:%H:%M} Asia/Taipei on trading days, or as soon as {', '.join(stage.upstream)} "
        f"is materialised with its blocking checks passed: {job.description}",
    )


DAILY_FLOW_SENSORS = [_stage_sensor(stage, job) for stage, job in STAGE_JOBS]
