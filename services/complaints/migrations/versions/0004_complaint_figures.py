"""complaint figures: the narrow table the statistics scan

Revision ID: 0004_complaint_figures
Revises: 0003_duration_buckets
Create Date: 2026-12-02 08:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_complaint_figures"
down_revision: str | None = "0003_duration_buckets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The codes as of this revision (workflow.STATUSES and SEVERITIES, in their order).
STATUSES = (
    "received",
    "judged",
    "decided",
    "communicated",
    "following_up",
    "confirmed",
    "reopened",
    "waiting_on_customer",
)
SEVERITIES = ("minor", "major", "critical")


def _code(column: str, names: tuple[str, ...]) -> str:
    whens = " ".join(f"WHEN '{name}' THEN {code}" for code, name in enumerate(names))
    return f"CASE {column} {whens} END"


# repository.tally_of as of this revision: status + 8 severity + 24 met + 72 reopened + 144 back.
TALLY = (
    f"({_code('status', STATUSES)}) + 8 * ({_code('severity', SEVERITIES)}) "
    "+ 24 * (CASE WHEN met_sla IS NULL THEN 2 WHEN met_sla THEN 1 ELSE 0 END) "
    "+ 72 * (CASE WHEN reopen_count > 0 THEN 1 ELSE 0 END) "
    "+ 144 * (CASE WHEN returned_at IS NOT NULL THEN 1 ELSE 0 END)"
)


def upgrade() -> None:
    op.create_table(
        "complaint_figures",
        sa.Column("complaint_id", sa.Uuid(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tally", sa.SmallInteger(), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("category", sa.String(length=100), nullable=True),
        sa.Column("tier", sa.String(length=40), nullable=True),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("satisfaction", sa.SmallInteger(), nullable=True),
        sa.Column("respond_business_bucket", sa.SmallInteger(), nullable=True),
        sa.Column("respond_wall_bucket", sa.SmallInteger(), nullable=True),
        sa.Column("resolve_business_bucket", sa.SmallInteger(), nullable=True),
        sa.Column("resolve_wall_bucket", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("complaint_id", name=op.f("pk_complaint_figures")),
    )
    op.execute(
        "INSERT INTO complaint_figures (complaint_id, opened_at, tally, severity, category, "
        "tier, owner, closed_at, satisfaction, respond_business_bucket, respond_wall_bucket, "
        "resolve_business_bucket, resolve_wall_bucket) "
        f"SELECT id, opened_at, {TALLY}, severity, category, tier, owner, closed_at, "
        "satisfaction, respond_business_bucket, respond_wall_bucket, resolve_business_bucket, "
        "resolve_wall_bucket FROM complaints"
    )


def downgrade() -> None:
    op.drop_table("complaint_figures")
