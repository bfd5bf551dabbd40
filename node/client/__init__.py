"""The officer SDK: what the CLI, the web console and other tools use to talk to a node.

It depends on `exchange` (the protocol) and gRPC only, never on the node's storage
(SQLAlchemy, Alembic): a test checks that importing it loads neither. `officer` holds
the connection, credentials and messages; `cases` and `matching` add casework and
victim identification on top of it, `admin` officer administration. Every call
returns frozen dataclasses, never protobuf messages (`results` holds those of cases,
evidence and matching); they keep the field names of the messages they come from, and
`to_json()` gives what `--json` prints.
"""

from __future__ import annotations

from node.client.admin import AdminClient, OfficerAccount
from node.client.officer import (
    HANDLING_CODES,
    OFFICER_PASSPHRASE_ENV,
    Credential,
    DeliveryProofInfo,
    Evidence,
    MessageDetail,
    MessageInfo,
    NodeCallError,
    OfficerClient,
)
from node.client.results import (
    AttachmentInfo,
    CaseEvent,
    CaseSummary,
    CaseView,
    MatchAnswer,
    RecordsLoaded,
    UploadStatus,
    WhoAmI,
)

__all__ = [
    "HANDLING_CODES",
    "OFFICER_PASSPHRASE_ENV",
    "AdminClient",
    "AttachmentInfo",
    "CaseEvent",
    "CaseSummary",
    "CaseView",
    "Credential",
    "DeliveryProofInfo",
    "Evidence",
    "MatchAnswer",
    "MessageDetail",
    "MessageInfo",
    "NodeCallError",
    "OfficerAccount",
    "OfficerClient",
    "RecordsLoaded",
    "UploadStatus",
    "WhoAmI",
]
