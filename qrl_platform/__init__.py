"""qrl_platform: a Dagster code location for a Taiwan-equities quant desk and a QRL/USDT treasury.

`qrl_platform.load(asset, partition | start/end)` reads back what materialisations stored.
"""

from qrl_platform.readback import load

__all__ = ["load"]
