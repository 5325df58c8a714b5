"""Technical indicators: `compute` (TA-Lib over batches of whole stocks) and the `TECHNICAL_FACTORS` registry."""

from qrl_platform.factors.technical.factors import TECHNICAL_FACTORS
from qrl_platform.factors.technical.indicators import FACTOR_IDS, compute

__all__ = ["FACTOR_IDS", "TECHNICAL_FACTORS", "compute"]
