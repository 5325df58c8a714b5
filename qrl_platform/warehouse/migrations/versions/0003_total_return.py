"""strategy_stats.unfilled_signals and factor_metadata.price_basis (SPEC S13, total return)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 19:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table in place for every change. Rows written before this
    # revision counted no signal as unfilled, and their factors' price basis is unknown until the
    # next factor_metadata refresh writes it ("none" until then).
    with op.batch_alter_table("strategy_stats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unfilled_signals", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("factor_metadata", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price_basis", sa.String(16), nullable=False, server_default="none"))


def downgrade() -> None:
    with op.batch_alter_table("factor_metadata", schema=None) as batch_op:
        batch_op.drop_column("price_basis")
    with op.batch_alter_table("strategy_stats", schema=None) as batch_op:
        batch_op.drop_column("unfilled_signals")
