"""Evaluation (issue 20): factor ICs, the rolling factor report and strategy backtests."""
