"""Tags and retry policies every job shares: the duration estimate (a WARNING above 2×), the run
queue tag deploy/dagster.yaml limits warehouse writers by, and the in-place step retry for outages.
Exchanges are not a run tag: each exchange host group is a concurrency pool (twse-tpex, mops, tdcc,
qrl_mexc) on the assets that call it, and the pool alone decides which steps may run together."""

import dagster as dg

from qrl_platform.factors import families
from qrl_platform.market import tables

ESTIMATE_TAG = "qrl/estimate_seconds"
MAX_RETRIES_TAG = "dagster/max_retries"
# The named job a run launched by the daily flow's automation stands for (its Dagster job is the
# implicit asset job): the run-failure sensor counts consecutive failures by it.
STAGE_TAG = "qrl/stage"

# The raw tables partitioned by trading day, in declaration order (qrl_platform/market/tables.py).
RAW_DAILY = list(tables.names(cadence="daily"))
# The indicator assets, one per declared family (qrl_platform/factors/families.py).
INDICATORS = list(families.ASSETS)


def job_tags(estimate_seconds: int, retries: int = 2, **queue_tags: str) -> dict[str, str]:
    """Estimate + retries, plus the tags deploy/dagster.yaml's run queue limits by
    (qrl/warehouse-writer: one writer per warehouse table group)."""
    tags = {ESTIMATE_TAG: str(estimate_seconds), MAX_RETRIES_TAG: str(retries)}
    tags.update({f"qrl/{name.replace('_', '-')}": value for name, value in queue_tags.items()})
    return tags


# The one retry policy of every job that touches the warehouse, Redis or an exchange: a failed step
# (exchange 5xx, database or Redis restart) is retried in place after 20 s, 60 s, 140 s (Dagster's
# exponential backoff: (2^n - 1) x delay), each ± up to 20 s of jitter, so runs that failed together
# do not all hit a server that is coming back at the same moment.
# A `dg.Failure(allow_retries=False)` is final (a day refused because its indicators failed their checks).
STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=20, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)
