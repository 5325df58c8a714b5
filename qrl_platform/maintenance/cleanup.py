"""CLEANUP_OLD_SIGNALS retention rules (seed JOB-M11-004), as plain functions over the warehouse.

* strategy_signals older than 90 days are deleted;
* strategy_executions keep their full diagnostics for 30 days (then diagnostics are cleared, the
  summary row stays) and are deleted after 365 days, with their job_execution_details;
* then VACUUM reclaims the space (SQLite: whole file; PostgreSQL: the touched tables).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from qrl_platform.warehouse import Warehouse
from qrl_platform.warehouse.schema import job_execution_details, strategy_executions, strategy_signals


@dataclass(frozen=True)
class RetentionPolicy:
    signals_days: int = 90
    execution_diagnostics_days: int = 30
    execution_summaries_days: int = 365

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 1:
                raise ValueError(f"retention {name} must be at least 1 day, got {value}")
        if self.execution_diagnostics_days > self.execution_summaries_days:
            raise ValueError("retention execution_diagnostics_days cannot exceed execution_summaries_days")


@dataclass(frozen=True)
class CleanupResult:
    signals_deleted: int
    diagnostics_cleared: int
    executions_deleted: int
    details_deleted: int
    vacuumed: bool

    def metadata(self) -> dict:
        return asdict(self)


def cleanup_old_signals(
    warehouse: Warehouse, today: dt.date, policy: RetentionPolicy = RetentionPolicy(), *, vacuum: bool = True
) -> CleanupResult:
    """Apply the retention rules as of `today` in one transaction, then VACUUM outside it."""
    signals_cutoff = today - dt.timedelta(days=policy.signals_days)
    diagnostics_cutoff = today - dt.timedelta(days=policy.execution_diagnostics_days)
    summaries_cutoff = today - dt.timedelta(days=policy.execution_summaries_days)
    with warehouse.begin() as conn:
        signals = conn.execute(sa.delete(strategy_signals).where(strategy_signals.c.trade_date < signals_cutoff))
        # Delete what is past every retention first, so "cleared" counts only rows that remain.
        details = conn.execute(
            sa.delete(job_execution_details).where(job_execution_details.c.trade_date < summaries_cutoff)
        )
        executions = conn.execute(
            sa.delete(strategy_executions).where(strategy_executions.c.execution_date < summaries_cutoff)
        )
        cleared = conn.execute(
            sa.update(strategy_executions)
            .where(strategy_executions.c.execution_date < diagnostics_cutoff)
            .where(strategy_executions.c.diagnostics.is_not(None))
            .values(diagnostics=None)
        )
    if vacuum:
        warehouse.vacuum([strategy_signals.name, strategy_executions.name, job_execution_details.name])
    return CleanupResult(signals.rowcount, cleared.rowcount, executions.rowcount, details.rowcount, vacuum)
