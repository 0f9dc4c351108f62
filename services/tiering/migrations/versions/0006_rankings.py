"""rankings keep their band edges, and a placement after events its cut-off

Revision ID: 0006_rankings
Revises: 9a3c5e7f1b24
Create Date: 2026-12-02 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_rankings"
down_revision: str | None = "9a3c5e7f1b24"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rankings",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ranked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("cutoffs", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rankings")),
    )
    op.create_index("ix_rankings_policy_as_of", "rankings", ["policy_id", "as_of"])
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cutoff", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("ranking_as_of", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_column("ranking_as_of")
        batch_op.drop_column("cutoff")
    op.drop_index("ix_rankings_policy_as_of", table_name="rankings")
    op.drop_table("rankings")
