"""Jobs of the daily flow (S9). Each carries its duration estimate (S10: WARNING above 2×) and the
retry tag for transient faults (network, database) — Dagster re-launches a failed run up to N times."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.maintenance.cleanup import RetentionPolicy, cleanup_old_signals
from qrl_platform.partitions import taipei_today
from qrl_platform.resources.warehouse import WarehouseResource

ESTIMATE_TAG = "qrl/estimate_seconds"
MAX_RETRIES_TAG = "dagster/max_retries"

RAW_DAILY = ["daily_quotes", "institutional_flows", "margin_balances", "valuations"]
INDICATORS = ["technical_indicators", "fundamental_indicators", "chip_indicators"]


def _tags(estimate_seconds: int, retries: int = 2, **queue_tags: str) -> dict[str, str]:
    """Estimate + retries, plus the tags deploy/dagster.yaml's run queue limits by (qrl/exchange,
    qrl/warehouse-writer): one run per exchange (its rate limit lives in one process) and one writer
    per warehouse table group."""
    tags = {ESTIMATE_TAG: str(estimate_seconds), MAX_RETRIES_TAG: str(retries)}
    tags.update({f"qrl/{name.replace('_', '-')}": value for name, value in queue_tags.items()})
    return tags


# Transient faults inside a step (exchange 5xx, database blip) are retried in place first.
STEP_RETRY = dg.RetryPolicy(max_retries=2, delay=20, backoff=dg.Backoff.EXPONENTIAL)

daily_market_job = dg.define_asset_job(
    "daily_market_job",
    selection=dg.AssetSelection.assets(*RAW_DAILY, *INDICATORS),
    description="16:00 trading days: ingest TWSE/TPEx (quotes, institutional flows, margin, valuations) and "
    "compute M07/M08/M09 with their blocking quality checks.",
    tags=_tags(estimate_seconds=180, exchange="twse-tpex"),
    op_retry_policy=STEP_RETRY,
)
strategies_job = dg.define_asset_job(
    "strategies_job",
    selection=dg.AssetSelection.assets("strategy_signals"),
    description="JOB-M11-001 (16:35): run every ACTIVE strategy once M07/M08/M09 passed their blocking checks.",
    tags=_tags(estimate_seconds=60, warehouse_writer="strategy_signals"),
)
notify_m13_job = dg.define_asset_job(
    "notify_m13_job",
    selection=dg.AssetSelection.assets("m13_notification"),
    description="JOB-M11-002 (16:45): publish STRATEGY_SIGNALS_READY to M13 if the day has unconsumed signals.",
    tags=_tags(estimate_seconds=30),
)
strategy_stats_job = dg.define_asset_job(
    "strategy_stats_job",
    selection=dg.AssetSelection.assets("strategy_stats"),
    description="JOB-M11-003 (17:00): per-strategy statistics and hit rates.",
    tags=_tags(estimate_seconds=60),
)
monthly_revenue_job = dg.define_asset_job(
    "monthly_revenue_job", selection=dg.AssetSelection.assets("monthly_revenue"), tags=_tags(120, exchange="twse-tpex")
)
financials_job = dg.define_asset_job("financials_job", selection=dg.AssetSelection.assets("financials"), tags=_tags(120, exchange="twse-tpex"))
shareholding_job = dg.define_asset_job(
    "shareholding_job", selection=dg.AssetSelection.assets("shareholding_distribution"), tags=_tags(120, exchange="twse-tpex")
)


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
    # Retention counts Taipei days: the Sunday 03:00 Taipei run is Saturday 19:00 UTC on a UTC host.
    result = cleanup_old_signals(warehouse.get(), taipei_today(), policy, vacuum=config.vacuum)
    context.log.info(f"cleanup: {result}")
    context.log_event(dg.AssetObservation(asset_key="strategy_signals", metadata={"cleanup_" + k: v for k, v in result.metadata().items()}))


@dg.job(
    description="JOB-M11-004 (Sunday 03:00): delete signals older than 90 days, keep execution diagnostics 30 days "
    "and summaries 365 days, then VACUUM.",
    tags=_tags(estimate_seconds=120, retries=1, warehouse_writer="strategy_signals"),
)
def cleanup_old_signals_job():
    cleanup_old_signals_op()


DAILY_FLOW_JOBS = [
    daily_market_job, strategies_job, notify_m13_job, strategy_stats_job,
    monthly_revenue_job, financials_job, shareholding_job, cleanup_old_signals_job,
]
