"""customer_aggregates.field_stamps: the revision and time of the event that set each field

Revision ID: 0011_field_stamps
Revises: 0010_backtests
Create Date: 2026-12-02 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_field_stamps"
down_revision: str | None = "0010_backtests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_stamps", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.drop_column("field_stamps")
