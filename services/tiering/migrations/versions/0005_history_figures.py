"""tier history keeps figures, not words, and is the outbox of tier.changed

A first ranking of a million customers wrote a million history rows and a million outbox
rows with their reasons and scores as text (~1.3 GB): about 16 s of PostgreSQL's time
alone, before any Python. A history row now keeps the numbers the words are made from
(band figures, rule values, scores); the reasons are made when the row is shown or
announced, and the relay publishes `tier.changed` straight from the history rows past the
`tier.changed` feed cursor (which starts past the rows that exist: those were announced
through the outbox). The score table's indexes of every row by tier and by churn flag
(~1.4 s of a first ranking per million customers) give way to one small index of the
customers at risk, by tier. Rows from before keep their words (`scores`, `reasons`), and their
band figures are copied out of them so later changes can build on them.

The downgrade makes the words NOT NULL again: rows written since keep their figures in
`scores` and get no reasons (the code that made them is the newer one).

Revision ID: 9a3c5e7f1b24
Revises: 5d2e8b4c1a90
Create Date: 2026-11-25 17:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a3c5e7f1b24"
down_revision: str | None = "5d2e8b4c1a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _figures() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("band_tier", sa.String(length=40), nullable=True),
        sa.Column("value", sa.BigInteger(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("customers", sa.Integer(), nullable=True),
        sa.Column("cumulative_share", sa.Double(), nullable=True),
        sa.Column("rule_values", sa.JSON(), nullable=True),
        sa.Column("rules_fired", sa.JSON(), nullable=True),
        sa.Column("rfm_r", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_f", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_m", sa.SmallInteger(), nullable=True),
        sa.Column("value_segment", sa.String(length=20), nullable=True),
        sa.Column("thermometer", sa.Double(), nullable=True),
        sa.Column("churn_risk", sa.Double(), nullable=True),
        sa.Column("at_risk", sa.Boolean(), nullable=True),
    ]


# Stored units per band metric (money in fen, quantities in thousandths).
SCALE = "CASE {metric} WHEN 'quantity' THEN 1000 WHEN 'revenue' THEN 100 WHEN 'collected' THEN 100 ELSE 1 END"


def _json_field(postgres: bool, name: str) -> str:
    return f"(scores->>'{name}')" if postgres else f"json_extract(scores, '$.{name}')"


def upgrade() -> None:
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("customer_key", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("event_id", sa.Uuid(), nullable=True))
        for column in _figures():
            batch_op.add_column(column)
        batch_op.add_column(sa.Column("correlation_id", sa.String(length=64), nullable=True))
        batch_op.alter_column("scores", existing_type=sa.JSON(), nullable=True, server_default=None)
        batch_op.alter_column(
            "reasons", existing_type=sa.JSON(), nullable=True, server_default=None
        )
        batch_op.drop_index("ix_tier_history_customer_id")
    postgres = op.get_bind().dialect.name == "postgresql"
    field = lambda name: _json_field(postgres, name)  # noqa: E731
    number = "numeric" if postgres else "REAL"
    op.execute(
        "UPDATE tier_history SET customer_key = (SELECT a.key FROM customer_aggregates a "
        "WHERE a.customer_id = tier_history.customer_id), "
        f"band_tier = {field('band_tier')}, "
        f"rank = CAST({field('rank')} AS INTEGER), "
        f"customers = CAST({field('customers')} AS INTEGER), "
        f"cumulative_share = CAST({field('cumulative_share')} AS {'float8' if postgres else 'REAL'}), "
        f"value = CAST(ROUND(CAST({field('value')} AS {number}) * "
        f"{SCALE.format(metric=field('metric'))}) AS BIGINT)"
    )
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.alter_column("customer_key", existing_type=sa.Integer(), nullable=False)
        batch_op.create_index("ix_tier_history_customer_key", ["customer_key"])
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_scores_tier")
        batch_op.drop_index("ix_customer_scores_at_risk")
        batch_op.create_index(
            "ix_customer_scores_at_risk",
            ["tier"],
            sqlite_where=sa.text("at_risk"),
            postgresql_where=sa.text("at_risk"),
        )
    feed_cursors = op.create_table(
        "feed_cursors",
        sa.Column("feed", sa.String(length=40), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("feed", name=op.f("pk_feed_cursors")),
    )
    last = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM tier_history")).scalar()
    op.bulk_insert(feed_cursors, [{"feed": "tier.changed", "last_id": int(last or 0)}])


def downgrade() -> None:
    op.drop_table("feed_cursors")
    with op.batch_alter_table("customer_scores", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_scores_at_risk")
        batch_op.create_index("ix_customer_scores_at_risk", ["at_risk"])
        batch_op.create_index("ix_customer_scores_tier", ["tier"])
    postgres = op.get_bind().dialect.name == "postgresql"
    build = "json_build_object" if postgres else "json_object"
    op.execute(
        f"UPDATE tier_history SET scores = {build}('band_tier', band_tier, 'rank', rank, "
        "'customers', customers, 'cumulative_share', cumulative_share) WHERE scores IS NULL"
    )
    op.execute("UPDATE tier_history SET reasons = '[]' WHERE reasons IS NULL")
    with op.batch_alter_table("tier_history", schema=None) as batch_op:
        batch_op.drop_index("ix_tier_history_customer_key")
        batch_op.alter_column(
            "scores", existing_type=sa.JSON(), nullable=False, server_default="{}"
        )
        batch_op.alter_column(
            "reasons", existing_type=sa.JSON(), nullable=False, server_default="[]"
        )
        batch_op.drop_column("correlation_id")
        for column in reversed(_figures()):
            batch_op.drop_column(column.name)
        batch_op.drop_column("event_id")
        batch_op.drop_column("customer_key")
        batch_op.create_index("ix_tier_history_customer_id", ["customer_id"])
