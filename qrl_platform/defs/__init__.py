"""Dagster wiring, one folder per domain. Each folder holds everything Dagster knows about its domain
(assets, checks, jobs, schedules, sensors) as thin definitions over the plain-Python core; the
`definitions` module loads this whole folder. Imports point one way: defs → core, never back."""
