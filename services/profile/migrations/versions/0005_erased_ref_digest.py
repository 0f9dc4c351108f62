"""customers.erased_ref_digest: the one-way hash of an erased customer's external_ref

Revision ID: 0005_erased_ref_digest
Revises: 0004_birthday_calendar
Create Date: 2026-12-02 16:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_erased_ref_digest"
down_revision: str | None = "0004_birthday_calendar"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erased_ref_digest", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_customers_erased_ref_digest"), ["erased_ref_digest"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customers_erased_ref_digest"))
        batch_op.drop_column("erased_ref_digest")
