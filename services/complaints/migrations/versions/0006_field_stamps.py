"""known_customers.field_stamps: the revision and time of the event that set each field

Revision ID: 0006_field_stamps
Revises: 0005_relay_lease
Create Date: 2026-12-02 23:55:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_field_stamps"
down_revision: str | None = "0005_relay_lease"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("field_stamps", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("known_customers", schema=None) as batch_op:
        batch_op.drop_column("field_stamps")
