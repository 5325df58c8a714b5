"""Maintenance jobs: CLEANUP_OLD_SIGNALS (Sunday 03:00) and DAGSTER_RETENTION (Sunday 03:30)."""
