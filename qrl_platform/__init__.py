"""qrl_platform: a Dagster code location for a Taiwan-equities quant desk and a QRL/USDT treasury.

`qrl_platform.load(asset, partition | start/end)` reads back what materialisations stored.
"""

import warnings

# BackfillPolicy and a few other parameters we rely on are marked beta in Dagster 1.13; the warning
# repeats for every asset and drowns the useful output of the CLI and `dagster dev`.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")

from qrl_platform.readback import load  # noqa: E402

__all__ = ["load"]
