"""message contents apart from delivery state: sealed bytes in a write-once row

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_contents",
        sa.Column("message_pk", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
        sa.Column("self_copy", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk"),
    )
    op.execute(
        "INSERT INTO message_contents (message_pk, envelope, self_copy) "
        "SELECT id, envelope, self_copy FROM messages"
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("self_copy")
        batch_op.drop_column("envelope")


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("envelope", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("self_copy", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE messages SET envelope = (SELECT envelope FROM message_contents c "
        "WHERE c.message_pk = messages.id), self_copy = (SELECT self_copy FROM "
        "message_contents c WHERE c.message_pk = messages.id)"
    )
    op.drop_table("message_contents")
