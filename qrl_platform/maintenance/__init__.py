"""Maintenance jobs of S7: CLEANUP_OLD_SIGNALS (Sunday 03:00)."""
