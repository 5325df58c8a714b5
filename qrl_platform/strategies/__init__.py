"""Strategies: definitions as data, a vectorised engine, warehouse writes, stats.

Plain Python, no Dagster: `definition` (YAML schema and validation), `engine` (polars evaluation),
`store` (warehouse writes and seeding), `stats` (hit rates), `runner` (a day range end to end).
The Dagster wiring is in `qrl_platform.defs.strategies`.
"""
