"""match compact replica: the querier's copies of peers' indexes as packed sorted blocks

The copies made by earlier versions (`match_replica`, a row per value) are dropped, not
converted: the background sync makes them again from the holders (docs/matching.md).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("match_replica", schema=None) as batch_op:
        batch_op.drop_index("ix_match_replica_value")
        batch_op.drop_index("ix_match_replica_handle")
    op.drop_table("match_replica")
    op.drop_table("match_peers")
    op.create_table(
        "match_peers",
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("lease_owner", sa.String(length=32), nullable=False),
        sa.Column("lease_until", sa.BigInteger(), nullable=False),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("peer"),
    )
    op.create_table(
        "match_copies",
        sa.Column("copy_no", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("records", sa.BigInteger(), nullable=False),
        sa.Column("expected", sa.BigInteger(), nullable=False),
        sa.Column("next_rec", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("dead", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("copy_no"),
    )
    op.create_index("ix_match_copies_peer", "match_copies", ["peer", "state"], unique=False)
    op.create_table(
        "match_copy_records",
        sa.Column("copy_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rec_no", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("handle", sa.LargeBinary(length=16), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("copy_no", "rec_no"),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "ix_match_copy_records_handle",
        "match_copy_records",
        ["copy_no", "handle"],
        unique=True,
    )
    op.create_table(
        "match_copy_parts",
        sa.Column("copy_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("bits", sa.Integer(), nullable=False),
        sa.Column("base_entries", sa.BigInteger(), nullable=False),
        sa.Column("delta_entries", sa.BigInteger(), nullable=False),
        sa.Column("delta_blobs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("copy_no", "part"),
    )
    op.create_table(
        "match_copy_blocks",
        sa.Column("copy_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("block", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("copy_no", "block"),
    )
    op.create_table(
        "match_copy_deltas",
        sa.Column("copy_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("part", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("copy_no", "part", "seq"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Packed random values do not compress: store them out of line without trying to.
        for table in ("match_copy_blocks", "match_copy_deltas"):
            op.execute(f"ALTER TABLE {table} ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("match_copy_deltas")
    op.drop_table("match_copy_blocks")
    op.drop_table("match_copy_parts")
    op.drop_index("ix_match_copy_records_handle", table_name="match_copy_records")
    op.drop_table("match_copy_records")
    op.drop_index("ix_match_copies_peer", table_name="match_copies")
    op.drop_table("match_copies")
    op.drop_table("match_peers")
    op.create_table(
        "match_peers",
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("synced_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("peer"),
    )
    op.create_table(
        "match_replica",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("peer", sa.String(length=64), nullable=False),
        sa.Column("handle", sa.LargeBinary(length=16), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("match_replica", schema=None) as batch_op:
        batch_op.create_index("ix_match_replica_handle", ["peer", "handle"], unique=False)
        batch_op.create_index("ix_match_replica_value", ["peer", "value"], unique=False)
