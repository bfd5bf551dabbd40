"""statistics releases, the yearly epsilon budget and peers' releases (ADR 0015)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stats_releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("period_start", sa.String(length=10), nullable=False),
        sa.Column("period_end", sa.String(length=10), nullable=False),
        sa.Column("epsilon", sa.Float(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("cells_released", sa.Integer(), nullable=False),
        sa.Column("cells_suppressed", sa.Integer(), nullable=False),
        sa.Column("drafted_by", sa.String(length=128), nullable=False),
        sa.Column("drafted_at", sa.BigInteger(), nullable=False),
        sa.Column("approved_by", sa.String(length=128), nullable=False),
        sa.Column("approved_at", sa.BigInteger(), nullable=False),
        sa.Column("approval_signature", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("release_id"),
    )
    op.create_index("ix_stats_releases_drafted_at", "stats_releases", ["drafted_at"], unique=False)
    op.create_table(
        "stats_budget",
        sa.Column("year", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("spent", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "stats_received",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("release_id", sa.String(length=36), nullable=False),
        sa.Column("period_start", sa.String(length=10), nullable=False),
        sa.Column("period_end", sa.String(length=10), nullable=False),
        sa.Column("document", sa.LargeBinary(), nullable=False),
        sa.Column("message_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agency", "release_id", name="uq_stats_received_release"),
    )
    op.create_index(
        "ix_stats_received_period", "stats_received", ["period_start", "period_end"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_stats_received_period", table_name="stats_received")
    op.drop_table("stats_received")
    op.drop_table("stats_budget")
    op.drop_index("ix_stats_releases_drafted_at", table_name="stats_releases")
    op.drop_table("stats_releases")
