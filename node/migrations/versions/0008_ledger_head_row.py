"""ledger head row: the tree's head exists from the start, so first appends cannot race

Before, the first append inserted the `ledger_head` row. Two replicas appending the very
first entries at once could both find no row to lock; now every append finds it and
locks it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# The empty tree: size 0, no frontier hashes. `node.storage.ledger.HEAD_ID` is 1.
_HEAD = sa.table(
    "ledger_head",
    sa.column("id", sa.Integer()),
    sa.column("size", sa.BigInteger()),
    sa.column("frontier", sa.LargeBinary()),
)


def upgrade() -> None:
    conn = op.get_bind()
    if conn.execute(sa.select(_HEAD.c.id).where(_HEAD.c.id == 1)).first() is None:
        conn.execute(_HEAD.insert().values(id=1, size=0, frontier=b""))


def downgrade() -> None:
    # The code before this revision inserted the row at the first append: an empty head
    # is removed, a head with entries stays (that code appends to it as it is).
    op.execute(_HEAD.delete().where(_HEAD.c.id == 1, _HEAD.c.size == 0))
