"""retention and legal hold: purge marks on content, holds on cases

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_PURGE = ("messages", "cases", "attachments", "match_records")


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger(), nullable=False, server_default="0")


def upgrade() -> None:
    for table in _PURGE:
        with op.batch_alter_table(table) as t:
            t.add_column(_int("purged_at"))
            t.add_column(
                sa.Column("purge_rule", sa.String(length=64), nullable=False, server_default="")
            )
    with op.batch_alter_table("cases") as t:
        t.add_column(_int("held_at"))
        t.add_column(sa.Column("held_by", sa.String(length=128), nullable=False, server_default=""))
        t.add_column(sa.Column("hold_reason", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("attachments") as t:
        t.add_column(_int("touched_at"))
        t.add_column(
            sa.Column("blob_purged", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("attachments") as t:
        t.drop_column("blob_purged")
        t.drop_column("touched_at")
    with op.batch_alter_table("cases") as t:
        t.drop_column("hold_reason")
        t.drop_column("held_by")
        t.drop_column("held_at")
    for table in _PURGE:
        with op.batch_alter_table(table) as t:
            t.drop_column("purge_rule")
            t.drop_column("purged_at")
