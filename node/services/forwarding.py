"""Onward transmission of an inbound note to another agency, as its handling codes allow."""

from __future__ import annotations

import structlog
from sqlalchemy import select

from exchange import policy
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import (
    Envelope,
    Header,
    MessageType,
)
from exchange.errors import InvalidFieldError
from exchange.ledger_entry import LedgerEntry
from exchange.retention import PurgedError, purged_text
from node import metrics
from node.services.case_store import CaseStaleError
from node.services.messages import (
    IN,
    NodeCore,
    NotFoundError,
    Officer,
    PermissionDeniedError,
    message_handling,
)
from node.storage import ledger
from node.storage.models import MessageRow

log = structlog.get_logger("mlax.forwarding")


def forward(core: NodeCore, officer: Officer, message_id: str, recipient: str, note: str) -> bytes:
    """Pass an inbound note on to another agency, unless its handling codes forbid it.

    Returns the new message id. A refused attempt is ledgered with its reason.
    """
    from exchange._proto.mlax.v1 import officer_pb2 as opb
    from exchange.encoding import parse_uuid

    try:
        raw = parse_uuid(message_id)
    except ValueError:
        raise InvalidFieldError(f"{message_id[:40]!r} is not a message id.") from None
    with core.db.read() as s:
        msg = s.scalars(
            select(MessageRow).where(MessageRow.message_id == raw, MessageRow.direction == IN)
        ).first()
        if msg is None:
            raise NotFoundError(f"No inbound message {message_id} on this node.")
        if msg.content is None:
            raise PurgedError(
                f"Message {message_id} was {purged_text(msg.purged_at, msg.purge_rule)}: "
                "there is nothing left to forward."
            )
        sealed = msg.content.envelope
        s.expunge(msg)
    if recipient == core.agency or core.directory.current().agency(recipient) is None:
        raise InvalidFieldError(f"Agency {recipient[:64]} is not another member of the federation.")
    envelope = Envelope.from_bytes(sealed, core.limits)
    header = Header.from_bytes(envelope.header, core.limits)
    handling = message_handling(msg, header)
    who = policy.OfficerId(core.agency, officer.name)
    decision = policy.may_forward(who, officer.role, handling, recipient)
    if decision.reason is not None:
        reason = decision.reason.value
        with core.db.write() as s:
            ledger.refusal(
                s,
                "message.forward_refused",
                who,
                reason,
                message_id=message_id,
                recipient=recipient,
            )
        metrics.REJECTED.labels(reason="forward_" + reason).inc()
        log.warning("forward_refused", message_id=message_id, reason=reason)
        raise PermissionDeniedError(decision.explain(f"Message {message_id}"))
    if header.message_type not in (MessageType.NOTE, MessageType.REPLY):
        raise CaseStaleError(
            f"Message {message_id} is case material ({header.message_type.name}); it "
            "leaves this agency only through a case of its own."
        )
    content = opb.Content.FromString(core.open_from_self(sealed))
    text = (note + "\n\n" if note else "") + f"--- forwarded from {header.sender} ---\n"
    text += content.text
    forwarded = opb.Content(
        subject=f"Fwd: {content.subject}"[:300],
        text=text,
        media_type=content.media_type or "text/plain",
    )
    codes, named = handling.wire(recipient)
    row, entry = core.outbound(
        officer.name,
        recipient,
        forwarded.SerializeToString(deterministic=True),
        MessageType.NOTE,
        case_ref=header.case_ref,
        handling_codes=codes,
        restricted_to=named,
    )
    with core.db.write() as s:
        s.add(row)
        ledger.append(s, entry)
        ledger.append(
            s,
            LedgerEntry.of(
                "message.forwarded",
                now_ms(),
                message_id=message_id,
                forwarded_as=format_uuid(row.message_id),
                recipient=recipient,
                officer=officer.name,
            ),
        )
    core.on_submit()
    return row.message_id
