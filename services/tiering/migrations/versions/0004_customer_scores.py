"""customer scores: tier, band and scores in a narrow table of their own

A daily re-rank rewrites most customers' scores (churn risk moves with the date) and a
first ranking gives everyone a tier; on the wide aggregate rows (JSON scores and reasons)
that cost ~25 s and ~45 s per million customers on PostgreSQL. Narrow rows in pages with
free room (fillfactor 70) are written several times faster. The current tier's reasons
and figures were a copy of the customer's latest tier_history row: that row is now the
only place they are kept (the downgrade copies them back).

Revision ID: 5d2e8b4c1a90
Revises: 3c1f0a7d9e52
Create Date: 2026-11-25 15:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d2e8b4c1a90"
down_revision: str | None = "3c1f0a7d9e52"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCORES = "band_tier, rfm_r, rfm_f, rfm_m, value_segment, thermometer, churn_risk, at_risk"
LATEST_HISTORY = (
    "SELECT h.{column} FROM tier_history h WHERE h.customer_id = customer_aggregates.customer_id "
    "ORDER BY h.id DESC LIMIT 1"
)


def _score_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("band_tier", sa.String(length=40), nullable=True),
        sa.Column("rfm_r", sa.Integer(), nullable=True),
        sa.Column("rfm_f", sa.Integer(), nullable=True),
        sa.Column("rfm_m", sa.Integer(), nullable=True),
        sa.Column("value_segment", sa.String(length=20), nullable=True),
        sa.Column("thermometer", sa.Double(), nullable=True),
        sa.Column("churn_risk", sa.Double(), nullable=True),
        sa.Column("at_risk", sa.Boolean(), nullable=False, server_default=sa.false()),
    ]


def upgrade() -> None:
    op.create_table(
        "customer_scores",
        sa.Column("key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=True),
        *_score_columns(),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_customer_scores")),
    )
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_scores_at_risk"), ["at_risk"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_scores_tier"), ["tier"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customer_scores SET (fillfactor = 70)")
    op.execute(
        f"INSERT INTO customer_scores (key, tier, {SCORES}) SELECT key, tier, {SCORES} "
        "FROM customer_aggregates WHERE tier IS NOT NULL OR band_tier IS NOT NULL "
        "OR rfm_r IS NOT NULL OR value_segment IS NOT NULL OR thermometer IS NOT NULL "
        "OR churn_risk IS NOT NULL"
    )
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_aggregates_at_risk"))
        batch_op.drop_index(batch_op.f("ix_customer_aggregates_tier"))
        for column in _score_columns():
            batch_op.drop_column(column.name)
        for name in ("tier", "scores", "reasons", "tier_changed_at"):
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tier", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("scores", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("tier_changed_at", sa.DateTime(timezone=True), nullable=True))
        for column in _score_columns():
            batch_op.add_column(column)
        batch_op.create_index(batch_op.f("ix_customer_aggregates_tier"), ["tier"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_customer_aggregates_at_risk"), ["at_risk"], unique=False
        )
    assignments = ", ".join(
        f"{name} = (SELECT s.{name} FROM customer_scores s WHERE s.key = customer_aggregates.key)"
        for name in ["tier", *SCORES.split(", ")]
        if name != "at_risk"
    )
    op.execute(
        f"UPDATE customer_aggregates SET {assignments}, at_risk = COALESCE(("
        "SELECT s.at_risk FROM customer_scores s WHERE s.key = customer_aggregates.key), false)"
    )
    op.execute(
        "UPDATE customer_aggregates SET "
        f"scores = COALESCE(({LATEST_HISTORY.format(column='scores')}), scores), "
        f"reasons = COALESCE(({LATEST_HISTORY.format(column='reasons')}), reasons), "
        f"tier_changed_at = ({LATEST_HISTORY.format(column='changed_at')})"
    )
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_scores_tier"))
        batch_op.drop_index(batch_op.f("ix_customer_scores_at_risk"))
    op.drop_table("customer_scores")
