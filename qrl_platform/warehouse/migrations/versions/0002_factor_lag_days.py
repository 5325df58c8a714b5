"""factor_metadata.lag_days: each factor's declared publication lag

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 22:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a table in place for every change; existing rows get lag 0.
    with op.batch_alter_table("factor_metadata", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lag_days", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("factor_metadata", schema=None) as batch_op:
        batch_op.drop_column("lag_days")
