"""policies, daily activity, touches, complaints, scores, tier history

Revision ID: 7bb06399a7a1
Revises: 1462a0d8f041
Create Date: 2026-11-23 08:13:38.542700
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7bb06399a7a1"
down_revision: str | None = "1462a0d8f041"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "complaints",
        sa.Column("complaint_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_complaints")),
    )
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_complaints_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "daily_activity",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("collected", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("customer_id", "day", name=op.f("pk_daily_activity")),
    )
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        batch_op.create_index("ix_daily_activity_day", ["day", "customer_id"], unique=False)

    op.create_table(
        "tier_history",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("previous_tier", sa.String(length=40), nullable=True),
        sa.Column("tier", sa.String(length=40), nullable=False),
        sa.Column("policy_id", sa.Uuid(), nullable=False),
        sa.Column("policy_version", sa.Integer(), nullable=False),
        sa.Column("scores", sa.JSON(), nullable=False, server_default="{}"),
        sa.Column("reasons", sa.JSON(), nullable=False, server_default="[]"),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_history")),
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tier_history_customer_id"), ["customer_id"], unique=False
        )

    op.create_table(
        "tier_policies",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tier_policies")),
        sa.UniqueConstraint("name", "version", name=op.f("uq_tier_policies_name")),
    )
    with op.batch_alter_table("tier_policies", schema=None) as batch_op:
        batch_op.create_index(
            "uq_tier_policies_one_active",
            ["status"],
            unique=True,
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.create_table(
        "touches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_touches")),
    )
    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.create_index("ix_touches_customer_day", ["customer_id", "day"], unique=False)

    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("collected", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("scores", sa.JSON(), nullable=False, server_default="{}"))
        batch_op.add_column(sa.Column("reasons", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("tier_changed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("band_tier", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("relationship_level", sa.String(length=30), nullable=True))
        batch_op.add_column(sa.Column("rfm_r", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rfm_f", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("rfm_m", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("value_segment", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("thermometer", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("churn_risk", sa.Double(), nullable=True))
        batch_op.add_column(
            sa.Column("at_risk", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column(
                "first_seen_at",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.func.now(),
            )
        )
        batch_op.create_index(
            batch_op.f("ix_customer_aggregates_at_risk"), ["at_risk"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_customer_aggregates_tier"), ["tier"], unique=False)

    # ### end Alembic commands ###


def downgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_aggregates_tier"))
        batch_op.drop_index(batch_op.f("ix_customer_aggregates_at_risk"))
        batch_op.drop_column("first_seen_at")
        batch_op.drop_column("at_risk")
        batch_op.drop_column("churn_risk")
        batch_op.drop_column("thermometer")
        batch_op.drop_column("value_segment")
        batch_op.drop_column("rfm_m")
        batch_op.drop_column("rfm_f")
        batch_op.drop_column("rfm_r")
        batch_op.drop_column("relationship_level")
        batch_op.drop_column("band_tier")
        batch_op.drop_column("tier_changed_at")
        batch_op.drop_column("reasons")
        batch_op.drop_column("scores")
        batch_op.drop_column("collected")
        batch_op.drop_column("erased")

    with op.batch_alter_table("touches", schema=None) as batch_op:
        batch_op.drop_index("ix_touches_customer_day")

    op.drop_table("touches")
    with op.batch_alter_table("tier_policies", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_tier_policies_one_active",
            sqlite_where=sa.text("status = 'active'"),
            postgresql_where=sa.text("status = 'active'"),
        )

    op.drop_table("tier_policies")
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tier_history_customer_id"))

    op.drop_table("tier_history")
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_daily_activity_day")

    op.drop_table("daily_activity")
    with op.batch_alter_table("complaints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_complaints_customer_id"))

    op.drop_table("complaints")
    # ### end Alembic commands ###
