"""strategy_signals: one (trade_date, strategy_id, execution_id) index instead of two

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 09:40:00
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Execution ids are random, so an index on them alone took each written signal to a random page:
    # a quarter of a year's bulk write. The consistency check's count is served by the date-first
    # index once it carries the execution id (an execution is one strategy on one day).
    op.create_index(
        "ix_strategy_signals_date_strategy_execution",
        "strategy_signals",
        ["trade_date", "strategy_id", "execution_id"],
    )
    op.drop_index("ix_strategy_signals_date_strategy", table_name="strategy_signals")
    op.drop_index("ix_strategy_signals_execution", table_name="strategy_signals")


def downgrade() -> None:
    op.create_index("ix_strategy_signals_execution", "strategy_signals", ["execution_id"])
    op.create_index("ix_strategy_signals_date_strategy", "strategy_signals", ["trade_date", "strategy_id"])
    op.drop_index("ix_strategy_signals_date_strategy_execution", table_name="strategy_signals")
