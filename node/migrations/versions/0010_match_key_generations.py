"""victim matching: key generations (rotation with overlap, token domain), values per key

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        # Keys made before token domains existed computed their values under domain 1.
        batch_op.add_column(
            sa.Column("token_domain", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(
            sa.Column("ready", sa.Boolean(), nullable=False, server_default=sa.true())
        )
        batch_op.add_column(sa.Column("retire_at", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("match_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("lease", sa.String(length=16), nullable=False, server_default="")
        )
        batch_op.add_column(
            sa.Column("lease_at", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_table(
        "match_values",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key_id", "record_id"),
    )
    # The values held so far were made under the active key.
    op.execute(
        'INSERT INTO match_values (key_id, record_id, "values") '
        'SELECT k.key_id, r.id, r."values" FROM match_records r, match_keys k '
        "WHERE k.active AND NOT r.removed"
    )
    with op.batch_alter_table("match_records", schema=None) as batch_op:
        batch_op.drop_column("values")


def downgrade() -> None:
    with op.batch_alter_table("match_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("values", sa.LargeBinary(), nullable=False, server_default="")
        )
    op.execute(
        'UPDATE match_records SET "values" = COALESCE((SELECT v."values" FROM match_values v '
        "JOIN match_keys k ON k.key_id = v.key_id AND k.active "
        "WHERE v.record_id = match_records.id), '')"
    )
    op.drop_table("match_values")
    op.execute("DELETE FROM match_keys WHERE NOT active")
    with op.batch_alter_table("match_state", schema=None) as batch_op:
        batch_op.drop_column("lease_at")
        batch_op.drop_column("lease")
    with op.batch_alter_table("match_keys", schema=None) as batch_op:
        batch_op.drop_column("retire_at")
        batch_op.drop_column("ready")
        batch_op.drop_column("token_domain")
