"""When things run: jobs, schedules, sensors and monitoring of the daily flow (S9, S10)."""
