"""JOB-M11-004 CLEANUP_OLD_SIGNALS: the retention rules of the warehouse, then VACUUM."""

import dagster as dg

from qrl_platform.calendar import taipei_today
from qrl_platform.defs.job_tags import STEP_RETRY, job_tags
from qrl_platform.defs.resources import WarehouseResource
from qrl_platform.maintenance.cleanup import RetentionPolicy, cleanup_old_signals


class CleanupConfig(dg.Config):
    signals_retention_days: int = 90
    executions_full_retention_days: int = 30
    executions_summary_retention_days: int = 365
    vacuum: bool = True


@dg.op(description="Apply the retention rules of CLEANUP_OLD_SIGNALS and VACUUM.")
def cleanup_old_signals_op(context: dg.OpExecutionContext, config: CleanupConfig, warehouse: WarehouseResource) -> None:
    policy = RetentionPolicy(
        config.signals_retention_days, config.executions_full_retention_days, config.executions_summary_retention_days
    )
    # Retention counts Taipei days: the desk's "90 days ago" starts at Taipei midnight, not the host's.
    result = cleanup_old_signals(warehouse.get(), taipei_today(), policy, vacuum=config.vacuum)
    context.log.info(f"cleanup: {result}")
    context.log_event(
        dg.AssetObservation(
            asset_key="strategy_signals", metadata={"cleanup_" + k: v for k, v in result.metadata().items()}
        )
    )


@dg.job(
    description="JOB-M11-004 (Sunday 03:00): delete signals older than 90 days, keep execution diagnostics 30 days "
    "and summaries 365 days, then VACUUM.",
    tags=job_tags(estimate_seconds=120, retries=1, warehouse_writer="strategy_signals"),
    op_retry_policy=STEP_RETRY,
)
def cleanup_old_signals_job():
    cleanup_old_signals_op()
