"""A ranking's history rows name their ranking instead of repeating what every one of
them shares (policy, version, moment, when written, customer count, correlation id):
those live once in the ranking's row, which is then kept. A first ranking of a million
customers writes rows a fifth narrower.

Revision ID: 0016_ranking_history
Revises: 0015_history_chain
Create Date: 2026-12-07 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_ranking_history"
down_revision: str | None = "0015_history_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SHARED = {
    "policy_id": sa.Uuid(),
    "policy_version": sa.Integer(),
    "as_of": sa.DateTime(timezone=True),
    "changed_at": sa.DateTime(timezone=True),
}


def upgrade() -> None:
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_version", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("changes", sa.Integer(), server_default="0", nullable=False))
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ranking_id", sa.BigInteger(), nullable=True))
        for name, type_ in SHARED.items():
            batch_op.alter_column(name, existing_type=type_, nullable=True)


def downgrade() -> None:
    # Rows of a ranking get their shared figures back before the columns are required.
    for name, source in (
        ("policy_id", "policy_id"),
        ("policy_version", "policy_version"),
        ("as_of", "as_of"),
        ("changed_at", "ranked_at"),
        ("customers", "customers"),
        ("correlation_id", "correlation_id"),
    ):
        op.execute(
            f"UPDATE tier_history SET {name} = (SELECT rankings.{source} FROM rankings "
            "WHERE rankings.id = tier_history.ranking_id) WHERE ranking_id IS NOT NULL"
        )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        for name, type_ in SHARED.items():
            batch_op.alter_column(name, existing_type=type_, nullable=False)
        batch_op.drop_column("ranking_id")
    with op.batch_alter_table("rankings", schema=None) as batch_op:
        batch_op.drop_column("changes")
        batch_op.drop_column("correlation_id")
        batch_op.drop_column("policy_version")
