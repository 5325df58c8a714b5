"""Dagster resources: one ConfigurableResource per outside system, configured from the environment."""
