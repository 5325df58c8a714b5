"""qrl_platform: a Dagster code location for a Taiwan-equities quant desk and a QRL/USDT treasury.

`qrl_platform.load(asset, partition | start/end)` reads back what materialisations stored.
"""

import warnings

# BackfillPolicy and a few other parameters we rely on are marked beta in Dagster 1.13; the warning
# repeats for every asset and drowns the useful output of the CLI and `dagster dev`.
warnings.filterwarnings("ignore", message=r".*is currently in (beta|preview).*")

import polars as pl  # noqa: E402

from qrl_platform import readback  # noqa: E402
from qrl_platform.settings import settings as _settings  # noqa: E402  (the name `settings` stays the module)


def load(asset_name: str, partition=None, **options) -> pl.DataFrame:
    """`readback.load(asset_name, partition, start=, end=, as_of=)` from where the settings of this
    moment say data lives: the notebook's entry point, which reads the settings once per call like a
    CLI command."""
    return readback.load(asset_name, partition, **options, configuration=_settings())


__all__ = ["load"]
