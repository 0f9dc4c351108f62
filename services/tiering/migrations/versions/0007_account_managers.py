"""customers know their account manager, for who may see them

Revision ID: 0007_account_managers
Revises: 0006_rankings
Create Date: 2026-12-02 09:35:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_account_managers"
down_revision: str | None = "0006_rankings"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_manager", sa.String(length=100), nullable=True))
        batch_op.add_column(
            sa.Column("account_manager_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            batch_op.f("ix_customer_aggregates_account_manager"), ["account_manager"]
        )


def downgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_aggregates_account_manager"))
        batch_op.drop_column("account_manager_at")
        batch_op.drop_column("account_manager")
