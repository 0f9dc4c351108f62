"""A customer's assignments are found through its score row and a chain, not an index:
customer_scores.history_id names the latest, tier_history.previous_id the one before.
The history's index by customer key goes (a first ranking of a million customers spent
about a second of its write maintaining it).

Revision ID: 0015_history_chain
Revises: 0014_lifetime_from_days
Create Date: 2026-12-07 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_history_chain"
down_revision: str | None = "0014_lifetime_from_days"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("previous_id", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.add_column(sa.Column("history_id", sa.BigInteger(), nullable=True))
    # Set-based on both databases (a correlated max() per row reads the id index
    # backwards: quadratic over a long history).
    op.execute(
        "UPDATE tier_history SET previous_id = chained.previous_id FROM (SELECT id, "
        "lag(id) OVER (PARTITION BY customer_key ORDER BY id) AS previous_id "
        "FROM tier_history) AS chained "
        "WHERE tier_history.id = chained.id AND chained.previous_id IS NOT NULL"
    )
    op.execute(
        "UPDATE customer_scores SET history_id = latest.id FROM (SELECT customer_key, "
        "max(id) AS id FROM tier_history GROUP BY customer_key) AS latest "
        "WHERE customer_scores.key = latest.customer_key"
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_history_customer_key")


def downgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index("ix_tier_history_customer_key", ["customer_key"], unique=False)
        batch_op.drop_column("previous_id")
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.drop_column("history_id")
