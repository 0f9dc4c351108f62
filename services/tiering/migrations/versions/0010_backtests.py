"""backtests, backtest_customers: a policy applied as of a past moment, as a report

Revision ID: 0010_backtests
Revises: 0009_churn_model_fits
Create Date: 2026-12-02 23:25:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_backtests"
down_revision: str | None = "0009_churn_model_fits"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "backtests",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtests")),
    )
    op.create_index(op.f("ix_backtests_created_at"), "backtests", ["created_at"], unique=False)
    op.create_table(
        "backtest_customers",
        sa.Column("backtest_id", sa.Uuid(), nullable=False),
        sa.Column("customer_key", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("tier", sa.String(length=40), nullable=False),
        sa.Column("band_tier", sa.String(length=40), nullable=False),
        sa.Column("rfm_r", sa.Integer(), nullable=True),
        sa.Column("rfm_f", sa.Integer(), nullable=True),
        sa.Column("rfm_m", sa.Integer(), nullable=True),
        sa.Column("value_segment", sa.String(length=20), nullable=True),
        sa.Column("thermometer", sa.Double(), nullable=True),
        sa.Column("churn_risk", sa.Double(), nullable=True),
        sa.Column("at_risk", sa.Boolean(), nullable=False),
        sa.Column("bought_again", sa.Boolean(), nullable=True),
        sa.PrimaryKeyConstraint("backtest_id", "customer_key", name=op.f("pk_backtest_customers")),
    )
    op.create_index(
        "ix_backtest_customers_rank",
        "backtest_customers",
        ["backtest_id", "rank", "customer_key"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_backtest_customers_rank", table_name="backtest_customers")
    op.drop_table("backtest_customers")
    op.drop_index(op.f("ix_backtests_created_at"), table_name="backtests")
    op.drop_table("backtests")
