"""M11 strategies (SPEC S6/S7): definitions as data, a vectorised engine, warehouse writes, stats.

Pure code (no Dagster): `definition` (YAML schema and validation), `engine` (polars evaluation),
`store` (warehouse writes and seeding), `stats` (hit rates), `runner` (a day range end to end).
Dagster wiring: `assets` and `checks`. The Dagster objects are exported lazily so importing the
pure modules (CLI, notebooks, benchmarks) does not import Dagster.
"""

__all__ = ["STRATEGY_ASSETS", "STRATEGY_CHECKS"]


def __getattr__(name: str):
    if name == "STRATEGY_ASSETS":
        from qrl_platform.strategy.assets import STRATEGY_ASSETS

        return STRATEGY_ASSETS
    if name == "STRATEGY_CHECKS":
        from qrl_platform.strategy.checks import STRATEGY_CHECKS

        return STRATEGY_CHECKS
    raise AttributeError(f"module 'qrl_platform.strategy' has no attribute {name!r}")
