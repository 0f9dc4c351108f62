"""customer keys: a dense number per customer; daily activity keyed by it

Revision ID: 3c1f0a7d9e52
Revises: 7bb06399a7a1
Create Date: 2026-11-24 11:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3c1f0a7d9e52"
down_revision: str | None = "7bb06399a7a1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _daily_table(customer_column: sa.Column) -> None:  # type: ignore[type-arg]
    op.create_table(
        "daily_activity",
        customer_column,
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.Column("collected", sa.BigInteger(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint(customer_column.name, "day", name=op.f("pk_daily_activity")),
    )
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        batch_op.create_index("ix_daily_activity_day", ["day", customer_column.name])


def _replace_daily(copy_rows: str, customer_column: sa.Column, restore_rows: str) -> None:  # type: ignore[type-arg]
    """Rebuild daily_activity keyed by another customer column, keeping every row."""
    op.execute(copy_rows)
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        batch_op.drop_index("ix_daily_activity_day")
    op.drop_table("daily_activity")
    _daily_table(customer_column)
    op.execute(restore_rows)
    op.drop_table("daily_activity_copy")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    if postgres:
        op.execute("CREATE SEQUENCE customer_key_seq")
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("key", sa.Integer(), nullable=True))
    if postgres:
        op.execute("UPDATE customer_aggregates SET key = nextval('customer_key_seq')")
    else:
        op.execute("UPDATE customer_aggregates SET key = rowid")
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.alter_column("key", existing_type=sa.Integer(), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_customer_aggregates_key"), ["key"])
    _replace_daily(
        "CREATE TABLE daily_activity_copy AS "
        "SELECT a.key AS customer_key, d.day, d.revenue, d.quantity, d.purchases, d.collected "
        "FROM daily_activity d JOIN customer_aggregates a ON a.customer_id = d.customer_id",
        sa.Column("customer_key", sa.Integer(), nullable=False),
        "INSERT INTO daily_activity (customer_key, day, revenue, quantity, purchases, collected) "
        "SELECT customer_key, day, revenue, quantity, purchases, collected "
        "FROM daily_activity_copy",
    )


def downgrade() -> None:
    _replace_daily(
        "CREATE TABLE daily_activity_copy AS "
        "SELECT a.customer_id, d.day, d.revenue, d.quantity, d.purchases, d.collected "
        "FROM daily_activity d JOIN customer_aggregates a ON a.key = d.customer_key",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        "INSERT INTO daily_activity (customer_id, day, revenue, quantity, purchases, collected) "
        "SELECT customer_id, day, revenue, quantity, purchases, collected "
        "FROM daily_activity_copy",
    )
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_customer_aggregates_key"), type_="unique")
        batch_op.drop_column("key")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SEQUENCE customer_key_seq")
