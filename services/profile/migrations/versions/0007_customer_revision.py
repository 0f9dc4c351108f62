"""customers.revision: the revision profile stamps on each customer event

Revision ID: 0007_customer_revision
Revises: 0006_relay_lease
Create Date: 2026-12-02 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_customer_revision"
down_revision: str | None = "0006_relay_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("revision", sa.Integer(), nullable=False, server_default="0"))
    # Later events of an existing customer count on from its version.
    op.execute("UPDATE customers SET revision = version")


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("revision")
