"""churn_model_fits: each fitting of the learned churn model and its back-test

Revision ID: 0009_churn_model_fits
Revises: 0008_relay_lease
Create Date: 2026-12-02 23:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_churn_model_fits"
down_revision: str | None = "0008_relay_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "churn_model_fits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("label_days", sa.Integer(), nullable=True),
        sa.Column("trained_on", sa.Integer(), nullable=False),
        sa.Column("tested_on", sa.Integer(), nullable=False),
        sa.Column("churned_share", sa.Double(), nullable=True),
        sa.Column("auc", sa.Double(), nullable=True),
        sa.Column("recency_auc", sa.Double(), nullable=True),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("model", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_churn_model_fits")),
    )


def downgrade() -> None:
    op.drop_table("churn_model_fits")
