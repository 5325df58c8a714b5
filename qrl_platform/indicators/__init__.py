"""Indicator wiring (M07/M08/M09): the factor registry, range computation, data quality, and the Dagster
assets, checks, job and schedule built on them. The maths lives in `technical`, `fundamental`, `chip`."""

from qrl_platform.indicators.assets import INDICATOR_ASSETS
from qrl_platform.indicators.checks import INDICATOR_CHECKS
from qrl_platform.indicators.jobs import INDICATOR_JOBS, INDICATOR_SCHEDULES
from qrl_platform.indicators.registry import ALL_FACTORS, factor_ids

__all__ = ["ALL_FACTORS", "INDICATOR_ASSETS", "INDICATOR_CHECKS", "INDICATOR_JOBS", "INDICATOR_SCHEDULES", "factor_ids"]
