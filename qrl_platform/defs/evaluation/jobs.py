"""The evaluation job and its daily schedule (after the 17:00 strategy stats)."""

from zoneinfo import ZoneInfo

import dagster as dg

from qrl_platform.calendar import TAIPEI_NAME
from qrl_platform.defs.job_tags import STEP_RETRY, job_tags

evaluation_job = dg.define_asset_job(
    "evaluation_job",
    selection=dg.AssetSelection.assets("factor_ic", "factor_report", "strategy_backtest"),
    description="The day's factor ICs, the rolling factor report and the strategy backtests.",
    tags=job_tags(estimate_seconds=30),
    op_retry_policy=STEP_RETRY,
)


@dg.schedule(
    job=evaluation_job,
    cron_schedule="30 17 * * 1-5",  # 17:30 Asia/Taipei, after strategy_stats (17:00)
    execution_timezone=TAIPEI_NAME,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Evaluation of today's partition at 17:30 Asia/Taipei (off by default: switch it on once the "
    "backtest's first day is chosen — the first run starts every book with its capital).",
)
def evaluation_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(TAIPEI_NAME)).date()
    return dg.RunRequest(partition_key=day.isoformat())
