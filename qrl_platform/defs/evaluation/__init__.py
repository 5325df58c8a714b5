"""Evaluation: factor ICs, the rolling factor report and strategy backtests."""
