"""case pending steps: an officer's consecutive case steps queue behind each other

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_pending_steps",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("state_after", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("case_id", "seq", name="uq_case_pending_seq"),
    )
    with op.batch_alter_table("case_pending_steps", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_case_pending_steps_case_id"), ["case_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("case_pending_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_case_pending_steps_case_id"))
    op.drop_table("case_pending_steps")
