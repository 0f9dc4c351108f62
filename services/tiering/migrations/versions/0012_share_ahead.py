"""tier_history.share_ahead: the share of the metric held by the customers ranked ahead

Revision ID: 0012_share_ahead
Revises: 0011_field_stamps
Create Date: 2026-12-03 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_share_ahead"
down_revision: str | None = "0011_field_stamps"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("share_ahead", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_column("share_ahead")
