"""What a node does with messages, independent of gRPC: submit, receive, read, list.

Every state change commits together with its ledger entry. The gRPC servicers in
`node.server` translate calls to these methods and `MlaxError`s to status codes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, cast

from sqlalchemy import Connection, Integer, Select, Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange import policy
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.directory import Directory
from exchange.encoding import format_uuid, now_ms, parse_uuid
from exchange.envelope import (
    AttachmentDigest,
    Envelope,
    HandlingCode,
    Header,
    Limits,
    MessageType,
    Opened,
    Sender,
    codes_of,
    codes_text,
    decrypt,
    handling_from_wire,
    seal,
)
from exchange.errors import (
    InvalidFieldError,
    MissingError,
    MlaxError,
    OversizedError,
    PolicyError,
    Status,
)
from exchange.ledger_entry import LedgerEntry
from exchange.receipt import Receipt, verify_receipt
from keys.identity import AgencyIdentity
from node.services.rejections import RejectionLedger
from node.services.trust import TrustedDirectory
from node.storage import ledger
from node.storage.db import Database, GroupCommit
from node.storage.models import MessageContentRow, MessageRow

OUT, IN = "out", "in"
QUEUED, RETRYING, DELIVERED, FAILED, RECEIVED = (
    "queued",
    "retrying",
    "delivered",
    "failed",
    "received",
)
# An outbound case step waiting behind this node's earlier step of the same case: the
# delivery worker does not claim it; the case desk releases it (QUEUED) on that receipt.
HELD = "held"
STATE_TO_WIRE = {
    QUEUED: opb.DELIVERY_STATE_QUEUED,
    RETRYING: opb.DELIVERY_STATE_RETRYING,
    DELIVERED: opb.DELIVERY_STATE_DELIVERED,
    FAILED: opb.DELIVERY_STATE_FAILED,
    RECEIVED: opb.DELIVERY_STATE_RECEIVED,
    HELD: opb.DELIVERY_STATE_HELD,
}


class NotFoundError(MissingError):
    status = Status.NOT_FOUND


class PermissionDeniedError(PolicyError):
    status = Status.PERMISSION_DENIED


class PeerMismatchError(PolicyError):
    """The envelope's sender is not the agency of the TLS peer that delivered it."""

    status = Status.PERMISSION_DENIED


class FastLane(Protocol):
    """The delivery worker's lane for new submissions (node.workers.delivery)."""

    def reserve(self, peer: str, now: int) -> int: ...

    def release(self, peer: str) -> None: ...

    def hand_over(self, row_id: int, row: MessageRow) -> None: ...


@dataclass(frozen=True)
class Officer:
    name: str
    role: str


def _codes(row: MessageRow) -> list[int]:
    return [c.value for c in codes_of(row.handling_codes)]


# The hot path writes messages with prebuilt Core statements: an ORM flush, or a statement
# built per call, cost several times the insert itself.
_MESSAGES = cast(Table, MessageRow.__table__)
_CONTENTS = cast(Table, MessageContentRow.__table__)
_MESSAGE_INSERT = insert(_MESSAGES)
_CONTENT_INSERT = insert(_CONTENTS)
_MESSAGE_FIELDS = tuple(c.key for c in _MESSAGES.columns if c.key != "id")


def insert_message(conn: Connection, row: MessageRow) -> int:
    """Store a new message built as a `MessageRow` (with its `content`) in the caller's
    transaction; returns its row id. The sealed bytes go to their write-once row."""
    result = conn.execute(_MESSAGE_INSERT, {k: getattr(row, k) for k in _MESSAGE_FIELDS})
    pk = int(result.inserted_primary_key[0])  # type: ignore[index]
    content = row.content
    conn.execute(
        _CONTENT_INSERT,
        {"message_pk": pk, "envelope": content.envelope, "self_copy": content.self_copy},
    )
    return pk


# What a listing reads: every column `summary` shows, no receipt, no sealed bytes.
_SUMMARY_COLUMNS = [
    _MESSAGES.c[k]
    for k in (
        "message_id",
        "direction",
        "peer",
        "message_type",
        "case_ref",
        "created_at",
        "state",
        "attempts",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "read_at",
        "handling_codes",
        "in_reply_to",
        "submitted_by",
    )
]


@functools.cache
def _listing(direction: bool | str, peer: bool, case_ref: bool) -> Select[Any]:
    """The listing statement for one combination of filters, newest first."""
    q = select(*_SUMMARY_COLUMNS)
    if direction:
        q = q.where(_MESSAGES.c.direction == bindparam("b_direction"))
    if peer:
        q = q.where(_MESSAGES.c.peer == bindparam("b_peer"))
    if case_ref:
        q = q.where(_MESSAGES.c.case_ref == bindparam("b_case_ref"))
    return q.order_by(_MESSAGES.c.id.desc()).limit(bindparam("b_limit", type_=Integer))


def message_handling(row: MessageRow, header: Header) -> policy.Handling:
    """Who may read a stored message: its header's codes and named officers (of the
    recipient), and on the sending node the officer who submitted it."""
    return policy.Handling.of_header(header, row.submitted_by if row.direction == OUT else None)


def summary(row: MessageRow) -> opb.MessageSummary:
    """The metadata view of a stored message (no content)."""
    return opb.MessageSummary(
        message_id=format_uuid(row.message_id),
        direction=opb.DIRECTION_OUTBOUND if row.direction == OUT else opb.DIRECTION_INBOUND,
        peer=row.peer,
        message_type=row.message_type,  # type: ignore[arg-type]
        case_ref=row.case_ref,
        created_at=row.created_at,
        state=STATE_TO_WIRE[row.state],
        attempts=row.attempts,
        last_error=row.last_error,
        next_attempt_at=row.next_attempt_at if row.state in (QUEUED, RETRYING) else 0,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        handling_codes=_codes(row),  # type: ignore[arg-type]
        in_reply_to=format_uuid(row.in_reply_to) if row.in_reply_to else "",
        submitted_by=row.submitted_by or "",
    )


class NodeCore:
    """The node's message operations over its database, identity and trusted directory."""

    def __init__(
        self,
        identity: AgencyIdentity,
        db: Database,
        directory: TrustedDirectory,
        limits: Limits,
        default_ttl_ms: int,
        on_submit: Callable[[], None] = lambda: None,
    ) -> None:
        self.identity = identity
        self.db = db
        self.directory = directory
        self.limits = limits
        self.default_ttl_ms = default_ttl_ms
        self.agency = identity.agency_id
        # Woken on every stored inbound message (Watch streams) and every submission
        # (`on_submit`: `run` passes the delivery worker's wake-up); both also poll, for
        # writes made by other replicas.
        self.inbound = threading.Condition()
        self.on_submit = on_submit
        # Set by `run` to the delivery worker: submissions are sent without a claim.
        self.fast_lane: FastLane | None = None
        self.commits = GroupCommit(db)
        # Refused deliveries, ledgered at a bounded rate (node.services.rejections;
        # `run` configures it).
        self.rejections = RejectionLedger(db)
        # Per message type: checks an opened inbound envelope and returns what to apply in
        # the transaction that stores it (raising MlaxError refuses the envelope).
        self.receive_hooks: dict[MessageType, Callable[[Opened], Callable[[Session], None]]] = {}
        # Called in the transaction that records an outbound message delivered (True) or
        # failed for good (False): per message type (`on_outcome`), or for every type.
        self.outcome_hooks: list[Callable[[Session, MessageRow, bool], None]] = []
        self._typed_hooks: dict[int, list[Callable[[Session, MessageRow, bool], None]]] = {}
        # Message types (values) whose delivery is never given up while only the transport
        # failed: their fate at the peer must be known (case steps; see DeliveryWorker).
        self.settle_types: set[int] = set()

    def on_outcome(
        self, types: set[MessageType], hook: Callable[[Session, MessageRow, bool], None]
    ) -> None:
        """Call `hook` when an outbound message of one of `types` is settled."""
        for t in types:
            self._typed_hooks.setdefault(t.value, []).append(hook)

    def outcome_hooks_for(
        self, message_type: int
    ) -> list[Callable[[Session, MessageRow, bool], None]]:
        return [*self._typed_hooks.get(message_type, ()), *self.outcome_hooks]

    def _sender(self, directory: Directory) -> Sender:
        # Sign with the newest key peers can already verify (see keys rotation).
        return self.identity.sender(published=directory.agency(self.agency))

    # -- officer side ---------------------------------------------------------------------

    def submit(self, officer: Officer, req: opb.SubmitRequest) -> opb.MessageSummary:
        """Seal a message and queue it in the outbox, in one transaction with its ledger entry."""
        if req.recipient == self.agency:
            raise InvalidFieldError("A message cannot be addressed to this node's own agency.")
        try:
            message_type = MessageType(req.message_type)
        except ValueError:
            raise InvalidFieldError("Field message_type: unknown message type.") from None
        in_reply_to = b""
        if req.in_reply_to:
            if len(req.in_reply_to) != 16:
                raise InvalidFieldError("in_reply_to must be a 16-byte message id.")
            in_reply_to = bytes(req.in_reply_to)
        if not req.content.subject.strip():
            raise InvalidFieldError("The message needs a subject.")
        if len(req.idempotency_key) > 128:
            raise OversizedError("The idempotency key exceeds 128 characters.")
        if message_type not in (MessageType.NOTE, MessageType.REPLY):
            raise InvalidFieldError(
                f"Message type {message_type.name} is sent through casework "
                "(mlax case ...), not as a free-form message."
            )
        if in_reply_to:
            # A reply keeps the handling of what it answers (it may quote it).
            codes = policy.reply_handling(
                self._answered(officer, in_reply_to, req.recipient),
                req.handling_codes,
                req.restricted_to,
                req.recipient,
            )
        else:
            codes = handling_from_wire(req.handling_codes, req.restricted_to, "a message")
        row, entry = self.outbound(
            officer.name,
            req.recipient,
            req.content.SerializeToString(deterministic=True),
            message_type,
            ttl_ms=req.ttl_seconds * 1000 if req.ttl_seconds else self.default_ttl_ms,
            case_ref=req.case_ref,
            handling_codes=codes,
            restricted_to=tuple(req.restricted_to),
            in_reply_to=in_reply_to,
            idempotency_key=req.idempotency_key or None,
        )

        # A place on the wire, if the peer's lane has one: the message is stored already
        # leased to the delivery worker, which sends it without a claim of its own.
        lane = self.fast_lane
        lease = lane.reserve(row.peer, now_ms()) if lane is not None else 0
        if lease:
            row.lease_until, row.attempts = lease, 1

        def store(s: Session) -> int:
            pk = insert_message(s.connection(), row)
            ledger.append(s, entry)
            return pk

        # Submissions arriving together share one commit; each returns once it is durable.
        try:
            pk = self.commits.run(store)
        except BaseException as e:
            if lane is not None and lease:
                lane.release(row.peer)
            if not isinstance(e, IntegrityError):
                raise
            # The officer's key names a message already submitted (a retried call): it
            # is answered as before, and nothing new is stored or sent.
            prior = self._submitted(officer.name, req.idempotency_key)
            if prior is None:
                raise
            return summary(prior)
        if lane is not None and lease:
            lane.hand_over(pk, row)
        else:
            self.on_submit()
        return summary(row)

    def _answered(
        self, officer: Officer, message_id: bytes, recipient: str
    ) -> tuple[HandlingCode, ...]:
        """The handling codes of the message a reply answers: one received from
        `recipient` whose content `officer` may read (a refusal is ledgered as GetMessage
        ledgers it)."""
        mid = format_uuid(message_id)
        with self.db.read() as s:
            row = s.scalars(
                select(MessageRow).where(
                    MessageRow.message_id == message_id,
                    MessageRow.direction == IN,
                    MessageRow.peer == recipient,
                )
            ).first()
            if row is None:
                raise InvalidFieldError(
                    f"No message {mid} from {recipient[:64]} is on this node: a reply "
                    "answers a message received from its recipient."
                )
            sealed = row.content
            s.expunge(row)
        if sealed is None:  # purged: its codes are kept, not the officers it named
            handling = policy.Handling.of(codes_of(row.handling_codes), (), recipient=self.agency)
        else:
            envelope = Envelope.from_bytes(sealed.envelope, self.limits)
            handling = message_handling(row, Header.from_bytes(envelope.header, self.limits))
        who = policy.OfficerId(self.agency, officer.name)
        decision = policy.may_read(who, officer.role, handling)
        if decision.reason is not None:
            with self.db.write() as s:
                ledger.refusal(
                    s, "content.read_refused", who, decision.reason.value, message_id=mid
                )
            raise PermissionDeniedError(decision.explain(f"Message {mid}"))
        return tuple(handling.codes)

    def _submitted(self, officer: str, key: str) -> MessageRow | None:
        if not key:
            return None
        with self.db.read() as s:
            return s.scalars(
                select(MessageRow).where(
                    MessageRow.submitted_by == officer, MessageRow.idempotency_key == key
                )
            ).first()

    def outbound(
        self,
        officer: str,
        recipient: str,
        body: bytes,
        message_type: MessageType,
        *,
        ttl_ms: int | None = None,
        case_ref: str = "",
        handling_codes: tuple[HandlingCode, ...] = (),
        restricted_to: tuple[str, ...] = (),
        in_reply_to: bytes = b"",
        attachments: tuple[AttachmentDigest, ...] = (),
        idempotency_key: str | None = None,
        now: int | None = None,
    ) -> tuple[MessageRow, LedgerEntry]:
        """Seal `body` to `recipient` and build its outbox row and ledger entry.

        The caller adds both in the transaction that makes the change they announce, so
        the outbox, the change and the ledger commit together or not at all.
        """
        directory = self.directory.current()
        if recipient == self.agency:
            raise InvalidFieldError("A message cannot be addressed to this node's own agency.")
        card = directory.agency(recipient)
        if card is None:
            raise InvalidFieldError(f"Agency {recipient} is not a member of the federation.")
        now = now_ms() if now is None else now
        sealing = functools.partial(
            seal,
            self._sender(directory),
            now_ms=now,
            ttl_ms=self.default_ttl_ms if ttl_ms is None else ttl_ms,
            case_ref=case_ref,
            handling_codes=handling_codes,
            restricted_to=restricted_to,
            in_reply_to=in_reply_to,
            attachments=attachments,
            limits=self.limits,
        )
        env = sealing(card, body, message_type)
        header = Header.from_bytes(env.header, self.limits)
        # The same content sealed to ourselves: what officers reread from their sent items.
        own = sealing(self.identity.card, body, message_type, message_id=header.message_id)
        row = MessageRow(
            message_id=header.message_id,
            direction=OUT,
            peer=card.agency_id,
            message_type=message_type.value,
            case_ref=case_ref,
            created_at=header.created_at,
            expires_at=header.expires_at,
            envelope_digest=env.digest,
            content=MessageContentRow(envelope=env.to_bytes(), self_copy=own.to_bytes()),
            state=QUEUED,
            attempts=0,
            next_attempt_at=now,
            lease_until=0,
            last_error="",
            delivered_at=0,
            read_at=0,
            submitted_by=officer,
            idempotency_key=idempotency_key,
            in_reply_to=in_reply_to,
            handling_codes=codes_text(handling_codes),
            purged_at=0,
            purge_rule="",
        )
        entry = LedgerEntry.of(
            "message.submitted",
            now,
            message_id=header.message_id_text,
            recipient=card.agency_id,
            officer=officer,
            envelope_digest=env.digest.hex(),
            message_type=message_type.name,
        )
        return row, entry

    def seal_to_self(self, body: bytes) -> bytes:
        """`body` encrypted to this node's own key, for content kept at rest."""
        directory = self.directory.current()
        return seal(
            self._sender(directory),
            self.identity.card,
            body,
            MessageType.NOTE,
            now_ms=now_ms(),
            limits=self.limits,
        ).to_bytes()

    def open_from_self(self, data: bytes) -> bytes:
        """The body of something `seal_to_self` stored (or a self-copy of a message)."""
        stored = Envelope.from_bytes(data, self.limits)
        header = Header.from_bytes(stored.header, self.limits)
        key = self.identity.recipient().decryption_keys.get(header.recipient_key_id)
        if key is None:
            raise NotFoundError("The key that decrypts this stored content is no longer held.")
        body, _ = decrypt(stored, header, key, self.limits)
        return body

    def _load(self, s: Session, message_id: str) -> MessageRow:
        try:
            raw = parse_uuid(message_id)
        except ValueError:
            raise InvalidFieldError(f"{message_id[:40]!r} is not a message id.") from None
        row = s.scalars(select(MessageRow).where(MessageRow.message_id == raw)).first()
        if row is None:
            raise NotFoundError(f"No message {message_id} on this node.")
        return row

    def get(self, officer: Officer, req: opb.GetMessageRequest) -> opb.MessageView:
        """A message's metadata and delivery evidence, and its content if asked for (ledgered)."""
        with self.db.read() as s:
            row = self._load(s, req.message_id)
            sealed = row.content
        if sealed is None:  # purged (node/services/retention.py): metadata and evidence stay
            return opb.MessageView(
                summary=summary(row),
                evidence=self._evidence(row),
                purged_at=row.purged_at,
                purge_rule=row.purge_rule,
            )
        envelope = Envelope.from_bytes(sealed.envelope, self.limits)
        header = Header.from_bytes(envelope.header, self.limits)
        view = opb.MessageView(
            summary=summary(row),
            sender_key_id=header.sender_key_id,
            recipient_key_id=header.recipient_key_id,
            restricted_to=list(header.restricted_to),
            evidence=self._evidence(row),
        )
        if not req.include_content:
            return view
        decision = policy.may_read(
            policy.OfficerId(self.agency, officer.name),
            officer.role,
            message_handling(row, header),
        )
        if decision.reason is policy.Reason.ROLE:
            self._refuse_read(officer, header, decision)
        if header.message_type not in (MessageType.NOTE, MessageType.REPLY):
            # Case steps and evidence are read through their case, which knows their form.
            view.content.CopyFrom(
                opb.Content(
                    subject=f"{header.message_type.name.lower()} of case {header.case_ref}",
                    text=f"Read it with: mlax case show {header.case_ref} --content",
                    media_type="text/plain",
                )
            )
            return view
        if not decision.allowed:
            self._refuse_read(officer, header, decision)
        stored = (
            Envelope.from_bytes(sealed.self_copy, self.limits) if sealed.self_copy else envelope
        )
        stored_header = Header.from_bytes(stored.header, self.limits)
        keys = self.identity.recipient().decryption_keys
        key = keys.get(stored_header.recipient_key_id)
        if key is None:
            raise NotFoundError(
                f"The key that decrypts message {header.message_id_text} is no longer held."
            )
        body, inner_signature = decrypt(stored, stored_header, key, self.limits)
        content = opb.Content.FromString(body)
        if row.direction == IN:
            view.non_repudiation_bundle = Opened(
                stored, stored_header, body, inner_signature
            ).non_repudiation_bundle()
        now = now_ms()
        with self.db.write() as s:
            fresh = self._load(s, req.message_id)
            if fresh.direction == IN and not fresh.read_at:
                fresh.read_at = now
            ledger.append(
                s,
                LedgerEntry.of(
                    "content.read",
                    now,
                    message_id=header.message_id_text,
                    officer=officer.name,
                    role=officer.role,
                ),
            )
            view.summary.CopyFrom(summary(fresh))
        view.content.CopyFrom(content)
        return view

    def _refuse_read(self, officer: Officer, header: Header, decision: policy.Decision) -> NoReturn:
        assert decision.reason is not None
        with self.db.write() as s:
            ledger.refusal(
                s,
                "content.read_refused",
                policy.OfficerId(self.agency, officer.name),
                decision.reason.value,
                message_id=header.message_id_text,
            )
        raise PermissionDeniedError(decision.explain(f"Message {header.message_id_text}"))

    def _evidence(self, row: MessageRow) -> opb.DeliveryEvidence:
        if row.receipt is None:
            return opb.DeliveryEvidence(envelope_digest=row.envelope_digest)
        receipt = Receipt.from_bytes(row.receipt)
        body = receipt.parsed()
        verified = True
        if row.direction == OUT:
            try:
                verify_receipt(
                    receipt,
                    self.directory.current(),
                    message_id=row.message_id,
                    envelope_digest=row.envelope_digest,
                    receiver=row.peer,
                    sender=self.agency,
                )
            except MlaxError:
                verified = False
        return opb.DeliveryEvidence(
            receipt=row.receipt,
            receipt_verified=verified,
            received_at=body.received_at,
            ledger_index=body.ledger_index,
            envelope_digest=row.envelope_digest,
            receiver_key_id=body.receiver_key_id,
        )

    def list_messages(self, req: opb.ListMessagesRequest) -> opb.ListMessagesResponse:
        # Metadata rows through Core (an ORM object per row cost more than the query):
        # one statement per combination of filters, built once.
        q = _listing(
            {opb.DIRECTION_OUTBOUND: OUT, opb.DIRECTION_INBOUND: IN}.get(req.direction, ""),
            bool(req.peer),
            bool(req.case_ref),
        )
        params = {
            "b_direction": {opb.DIRECTION_OUTBOUND: OUT, opb.DIRECTION_INBOUND: IN}.get(
                req.direction, ""
            ),
            "b_peer": req.peer,
            "b_case_ref": req.case_ref,
            "b_limit": min(req.limit or 50, 1000),
        }
        with self.db.engine.connect() as conn:
            rows = conn.execute(q, params).all()
        return opb.ListMessagesResponse(messages=[summary(r) for r in rows])  # type: ignore[arg-type]

    def inbound_after(self, cursor: int, limit: int = 100) -> list[MessageRow]:
        with self.db.read() as s:
            return list(
                s.scalars(
                    select(MessageRow)
                    .where(MessageRow.direction == IN, MessageRow.id > cursor)
                    .order_by(MessageRow.id)
                    .limit(limit)
                ).all()
            )

    def inbound_cursor(self, message_id: str) -> int:
        if not message_id:
            with self.db.read() as s:
                last = s.scalars(
                    select(MessageRow.id)
                    .where(MessageRow.direction == IN)
                    .order_by(MessageRow.id.desc())
                    .limit(1)
                ).first()
            return last or 0
        with self.db.read() as s:
            return self._load(s, message_id).id

    # -- federation side ------------------------------------------------------------------

    def receive(self, data: bytes, peer_agency: str) -> Receipt:
        """Verify an envelope from `peer_agency`, store it with its ledger entry, and receipt it.

        A re-delivery of the same envelope returns the original receipt and changes nothing.
        """
        [result] = self.receive_many([data], peer_agency)
        if isinstance(result, MlaxError):
            raise result
        return result

    def receive_many(self, datas: Sequence[bytes], peer_agency: str) -> list[Receipt | MlaxError]:
        """`receive` for several envelopes in one transaction: one answer per envelope, in
        order, its receipt or the error that refused it (node.services.inbound)."""
        from node.services.inbound import receive_many  # it builds on this module

        return receive_many(self, datas, peer_agency)

    def record_rejection(self, peer: str, reason: str, error: MlaxError) -> None:
        """Ledger a refused delivery (reason is an error class name, never content): as a
        `message.rejected` entry, or past the rate limit counted into one
        `message.rejected_aggregate` entry per window (node.services.rejections)."""
        self.rejections.record(peer, reason, error.status)
