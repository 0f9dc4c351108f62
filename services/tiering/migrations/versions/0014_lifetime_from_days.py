"""A customer's lifetime figures are the sums of its daily rows: daily_activity gains the
day's first and last purchase; customer_aggregates loses revenue, quantity, collected,
purchase_count and the first and last purchase, which every purchase rewrote.

The lifetime's first and last purchase are kept on the daily rows of those days; earlier
days have none (only the lifetime's earliest and latest are read).

Revision ID: 0014_lifetime_from_days
Revises: 0013_standing_figures
Create Date: 2026-12-07 07:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_lifetime_from_days"
down_revision: str | None = "0013_standing_figures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIFETIME = ("revenue", "quantity", "collected", "purchase_count")
MOMENTS = ("first_purchase_at", "last_purchase_at")


def _epoch_day(column: str) -> str:
    """SQL for the epoch day (UTC) of a timestamp column, as models.epoch_day."""
    if op.get_bind().dialect.name == "postgresql":
        return f"floor(extract(epoch from {column}) / 86400)::integer"
    return f"CAST(strftime('%s', {column}) AS INTEGER) / 86400"


def upgrade() -> None:
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        for name in MOMENTS:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    for name in MOMENTS:
        op.execute(
            f"UPDATE daily_activity SET {name} = ("
            f"SELECT a.{name} FROM customer_aggregates a "
            "WHERE a.key = daily_activity.customer_key "
            f"AND {_epoch_day(f'a.{name}')} = daily_activity.day) "
            "WHERE EXISTS (SELECT 1 FROM customer_aggregates a "
            "WHERE a.key = daily_activity.customer_key "
            f"AND {_epoch_day(f'a.{name}')} = daily_activity.day)"
        )
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        for name in (*LIFETIME, *MOMENTS):
            batch_op.drop_column(name)


def downgrade() -> None:
    with op.batch_alter_table("customer_aggregates", schema=None) as batch_op:
        for name in LIFETIME:
            kind = sa.Integer() if name == "purchase_count" else sa.BigInteger()
            batch_op.add_column(sa.Column(name, kind, nullable=False, server_default="0"))
        for name in MOMENTS:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
    sums = {
        "revenue": "sum(d.revenue)",
        "quantity": "sum(d.quantity)",
        "collected": "sum(d.collected)",
        "purchase_count": "sum(d.purchases)",
        "first_purchase_at": "min(d.first_purchase_at)",
        "last_purchase_at": "max(d.last_purchase_at)",
    }
    for name, total in sums.items():
        found = (
            f"(SELECT {total} FROM daily_activity d WHERE d.customer_key = customer_aggregates.key)"
        )
        value = found if name in MOMENTS else f"COALESCE({found}, 0)"
        op.execute(f"UPDATE customer_aggregates SET {name} = {value}")
    with op.batch_alter_table("daily_activity", schema=None) as batch_op:
        for name in reversed(MOMENTS):
            batch_op.drop_column(name)
