"""The officer SDK: what the CLI, the web console and other tools use to talk to a node.

It depends on `exchange` (the protocol) and gRPC only, never on the node's storage
(SQLAlchemy, Alembic): a test checks that importing it loads neither. `officer` holds
the connection, credentials and messages; `cases` and `matching` add casework and
victim identification on top of it.
"""

from __future__ import annotations

from node.client.officer import (
    HANDLING_CODES,
    OFFICER_PASSPHRASE_ENV,
    Credential,
    Evidence,
    MessageDetail,
    MessageInfo,
    NodeCallError,
    OfficerClient,
)

__all__ = [
    "HANDLING_CODES",
    "OFFICER_PASSPHRASE_ENV",
    "Credential",
    "Evidence",
    "MessageDetail",
    "MessageInfo",
    "NodeCallError",
    "OfficerClient",
]
