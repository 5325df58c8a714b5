"""The technical, fundamental and chip factors: plain polars maths per module,
one registry of their definitions, range computation over stored raw frames and data-quality rules.

Plain Python, no Dagster. `Factor` is the shape of one definition; `registry.ALL_FACTORS` lists them
all and feeds `factor_metadata`, the quality checks and the strategy validator. The Dagster wiring
is in `qrl_platform.defs.factors`.
"""

from qrl_platform.factors.factor import Factor

__all__ = ["Factor"]
