"""REFRESH_FACTOR_METADATA (JOB-M11-005): sync the factor definitions in code into `factor_metadata`,
Monday 07:00."""
# No `from __future__ import annotations` in Dagster wiring: Dagster inspects the real annotations.

import dagster as dg

from qrl_platform.defs.factors.assets import factor_metadata
from qrl_platform.defs.job_tags import STEP_RETRY, job_tags

refresh_factor_metadata_job = dg.define_asset_job(
    name="refresh_factor_metadata_job",
    selection=dg.AssetSelection.assets(factor_metadata),
    description="REFRESH_FACTOR_METADATA (JOB-M11-005): replace the warehouse factor_metadata table with the factor "
    "registry in code (technical, fundamental and chip).",
    tags={"module": "M11-005", **job_tags(estimate_seconds=30)},
    op_retry_policy=STEP_RETRY,
)
