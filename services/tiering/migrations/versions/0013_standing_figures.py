"""customer_scores: the band value of the latest full ranking and of a later placement,
and the moment of the scoring that wrote the row; rankings.total: the metric's total

Revision ID: 0013_standing_figures
Revises: 0012_share_ahead
Create Date: 2026-12-03 07:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_standing_figures"
down_revision: str | None = "0012_share_ahead"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ranked_value", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("placed_value", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("scored_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("total", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.drop_column("total")
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.drop_column("scored_at")
        batch_op.drop_column("placed_value")
        batch_op.drop_column("ranked_value")
