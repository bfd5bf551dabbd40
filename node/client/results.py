"""What the officer SDK returns: frozen dataclasses, converted from the wire once, here.

Each result keeps the attribute names of the protobuf message it comes from
(`view.summary.case_ref`, `view.timeline[0].digest`, `answer.band`), so code written
against the messages reads them unchanged; repeated fields are tuples, bytes stay bytes,
and a sub-message that may be absent (a case's form, a step's details) is None when the
node did not send it. The form and the step details stay protocol documents
(exchange.forms builds, checks and describes them).

`to_json()` gives the document `mlax ... --json` prints: the protobuf JSON mapping of the
message, field names as in the .proto (64-bit integers as strings, bytes as base64, enum
values by name, fields at their default left out). `wire_json` makes it from the
dataclass alone; tests/node/client/test_results.py holds it to json_format's output.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.retention import purged_text

_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})
_FLOAT = frozenset({FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE})
_M = TypeVar("_M", bound=Message)


class WireResult:
    """A result made from one protobuf message (`WIRE`), with the same field names."""

    WIRE: ClassVar[type[Message]]

    def to_json(self) -> dict[str, Any]:
        """The protobuf JSON mapping of the message this result came from."""
        return wire_json(self)


def wire_json(result: WireResult) -> dict[str, Any]:
    """`result` as json_format.MessageToDict(message, preserving_proto_field_name=True)
    shows the message it came from: what every `--json` of a case, an attachment, an
    upload or a records load prints."""
    out: dict[str, Any] = {}
    descriptor = result.WIRE.DESCRIPTOR
    assert isinstance(descriptor, Descriptor)  # the upb descriptor is one; its stub says not
    for field in sorted(descriptor.fields, key=lambda f: f.number):
        value = getattr(result, field.name)
        if field.is_repeated:
            if value:
                out[field.name] = [_json_value(field, v) for v in value]
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            if value is not None:
                out[field.name] = _json_value(field, value)
        elif value != field.default_value:
            out[field.name] = _json_value(field, value)
    return out


def _json_value(field: FieldDescriptor, value: Any) -> Any:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        if isinstance(value, WireResult):
            return wire_json(value)
        return json_format.MessageToDict(value, preserving_proto_field_name=True)
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        named = field.enum_type.values_by_number.get(value) if field.enum_type else None
        return named.name if named is not None else value
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    if kind in _INT64:
        return str(value)
    if kind in _FLOAT:
        # No result carries one; json_format spells NaN and infinities its own way.
        raise TypeError(f"{field.full_name}: floating-point fields are not mapped.")
    return value


# -- evidence ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentInfo(WireResult):
    """One evidence file of a case, as `mlax case show` lists it."""

    WIRE = apb.AttachmentInfo

    attachment_id: str
    case_ref: str
    name: str
    size: int
    sha256: bytes
    # "uploading", "sending", "delivered", "failed" (outbound); "receiving", "available".
    state: str
    peer: str
    # "out" or "in".
    direction: str
    confirmed_chunks: int
    total_chunks: int
    message_id: str
    created_at: int
    completed_at: int
    description: str
    last_error: str
    chunk_size: int
    # Set once the file was purged under a retention rule (`purged` says so in words).
    purged_at: int
    purge_rule: str

    @property
    def purged(self) -> str:
        return purged_text(self.purged_at, self.purge_rule) if self.purged_at else ""

    @classmethod
    def from_proto(cls, m: apb.AttachmentInfo) -> AttachmentInfo:
        return cls(
            attachment_id=m.attachment_id,
            case_ref=m.case_ref,
            name=m.name,
            size=m.size,
            sha256=bytes(m.sha256),
            state=m.state,
            peer=m.peer,
            direction=m.direction,
            confirmed_chunks=m.confirmed_chunks,
            total_chunks=m.total_chunks,
            message_id=m.message_id,
            created_at=m.created_at,
            completed_at=m.completed_at,
            description=m.description,
            last_error=m.last_error,
            chunk_size=m.chunk_size,
            purged_at=m.purged_at,
            purge_rule=m.purge_rule,
        )


@dataclass(frozen=True)
class UploadStatus(WireResult):
    """How far an upload got; once complete, the attachment and the message carrying it."""

    WIRE = apb.UploadStatus

    upload_id: str
    confirmed_chunks: int
    total_chunks: int
    chunk_size: int
    complete: bool
    attachment_id: str
    message_id: str

    @classmethod
    def from_proto(cls, m: apb.UploadStatus) -> UploadStatus:
        return cls(
            upload_id=m.upload_id,
            confirmed_chunks=m.confirmed_chunks,
            total_chunks=m.total_chunks,
            chunk_size=m.chunk_size,
            complete=m.complete,
            attachment_id=m.attachment_id,
            message_id=m.message_id,
        )


# -- cases ------------------------------------------------------------------------------------

# A running legal clock is "due soon" when at most this much of it is left (a day), or when
# less than a quarter of it is left for clocks shorter than four days (emergencies).
DUE_SOON_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Clock:
    """One running legal clock of a case, as every view of cases flags it."""

    # "acknowledgement" or "response".
    name: str
    due: int
    # "overdue", "due-soon" or "running".
    status: str


@dataclass(frozen=True)
class CaseSummary(WireResult):
    """A case's state, clocks and what this node's officers may do next."""

    WIRE = cpb.CaseSummary

    case_ref: str
    case_type: str
    # This node's party: "requesting" or "requested".
    role: str
    peer: str
    state: str
    urgency: str
    seq: int
    opened_at: int
    updated_at: int
    # A step this node sent that the peer has not yet receipted.
    pending_action: str
    pending_delivery: str
    pending_error: str
    awaiting_approval: bool
    created_by: str
    approved_by: str
    ack_due: int
    response_due: int
    # Clock names that have run out: "acknowledgement", "response".
    overdue: tuple[str, ...]
    requested_deadline: int
    allowed_actions: tuple[str, ...]
    form_digest: bytes
    head_digest: bytes
    # HandlingCode values, as on the wire.
    handling_codes: tuple[int, ...]
    restricted_to: tuple[str, ...]
    last_error: str
    # This node's own steps not yet receipted by the peer, in order.
    queued_actions: tuple[str, ...]
    # The step number and state once they have taken effect.
    local_seq: int
    local_state: str
    # Legal hold (0 and empty: none), and the purge of the form and steps' details.
    held_at: int
    held_by: str
    hold_reason: str
    purged_at: int
    purge_rule: str

    @property
    def purged(self) -> str:
        """ "purged on DATE under retention rule RULE", or "" while the content is kept."""
        return purged_text(self.purged_at, self.purge_rule) if self.purged_at else ""

    def clocks(self, now_ms: int) -> tuple[Clock, ...]:
        """The case's running clocks, each overdue, due soon or running: the one rule the
        CLI's `mlax cases` and the console both show. The node's word on overdue wins; a
        clock past its instant the node has not flagged yet counts as overdue too."""
        out = []
        for name, due, opened in (
            ("acknowledgement", self.ack_due, self.opened_at),
            ("response", self.response_due, self.opened_at),
        ):
            if not due:
                continue
            window = min(DUE_SOON_MS, max(due - opened, 0) // 4) if opened else DUE_SOON_MS
            if name in self.overdue or now_ms > due:
                status = "overdue"
            elif due - now_ms <= window:
                status = "due-soon"
            else:
                status = "running"
            out.append(Clock(name, due, status))
        return tuple(out)

    @classmethod
    def from_proto(cls, m: cpb.CaseSummary) -> CaseSummary:
        return cls(
            case_ref=m.case_ref,
            case_type=m.case_type,
            role=m.role,
            peer=m.peer,
            state=m.state,
            urgency=m.urgency,
            seq=m.seq,
            opened_at=m.opened_at,
            updated_at=m.updated_at,
            pending_action=m.pending_action,
            pending_delivery=m.pending_delivery,
            pending_error=m.pending_error,
            awaiting_approval=m.awaiting_approval,
            created_by=m.created_by,
            approved_by=m.approved_by,
            ack_due=m.ack_due,
            response_due=m.response_due,
            overdue=tuple(m.overdue),
            requested_deadline=m.requested_deadline,
            allowed_actions=tuple(m.allowed_actions),
            form_digest=bytes(m.form_digest),
            head_digest=bytes(m.head_digest),
            handling_codes=tuple(int(c) for c in m.handling_codes),
            restricted_to=tuple(m.restricted_to),
            last_error=m.last_error,
            queued_actions=tuple(m.queued_actions),
            local_seq=m.local_seq,
            local_state=m.local_state,
            held_at=m.held_at,
            held_by=m.held_by,
            hold_reason=m.hold_reason,
            purged_at=m.purged_at,
            purge_rule=m.purge_rule,
        )


@dataclass(frozen=True)
class CaseEvent(WireResult):
    """One step of a case's timeline."""

    WIRE = cpb.CaseEvent

    seq: int
    action: str
    # "requesting" or "requested"; and the agency playing it.
    party: str
    agency: str
    at: int
    officer: str
    message_id: str
    digest: bytes
    state_after: str
    # What the step said; None unless content was asked for (and the step says anything).
    details: fpb.TransitionDetails | None

    @classmethod
    def from_proto(cls, m: cpb.CaseEvent) -> CaseEvent:
        return cls(
            seq=m.seq,
            action=m.action,
            party=m.party,
            agency=m.agency,
            at=m.at,
            officer=m.officer,
            message_id=m.message_id,
            digest=bytes(m.digest),
            state_after=m.state_after,
            details=_copy(m.details) if m.HasField("details") else None,
        )


@dataclass(frozen=True)
class CaseView(WireResult):
    """A case: its summary, timeline and attachments; with content, its form."""

    WIRE = cpb.CaseView

    # Always sent by the node (an absent one reads as a summary of empty fields).
    summary: CaseSummary
    # The request; None unless content was asked for.
    form: fpb.CaseForm | None
    timeline: tuple[CaseEvent, ...]
    attachments: tuple[AttachmentInfo, ...]

    @classmethod
    def from_proto(cls, m: cpb.CaseView) -> CaseView:
        return cls(
            summary=CaseSummary.from_proto(m.summary),
            form=_copy(m.form) if m.HasField("form") else None,
            timeline=tuple(CaseEvent.from_proto(e) for e in m.timeline),
            attachments=tuple(AttachmentInfo.from_proto(a) for a in m.attachments),
        )


# -- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordsLoaded(WireResult):
    """What a load (or removal) of victim records changed, and the index it left."""

    WIRE = mpb.LoadRecordsResponse

    added: int
    updated: int
    unchanged: int
    removed: int
    index_version: int
    records: int

    @classmethod
    def from_proto(cls, m: mpb.LoadRecordsResponse) -> RecordsLoaded:
        return cls(
            added=m.added,
            updated=m.updated,
            unchanged=m.unchanged,
            removed=m.removed,
            index_version=m.index_version,
            records=m.records,
        )


@dataclass(frozen=True)
class MatchAnswer(WireResult):
    """One peer's answer to one query of a match request."""

    WIRE = mpb.MatchAnswer

    # Index of the query in the request.
    query: int
    peer: str
    # "hit", "no-hit", "unavailable", "over-quota" or "error".
    result: str
    # For a hit: "strong" or "possible", and the reference a follow-up quotes.
    band: str
    reference: str
    # For unavailable, over-quota and error: one sentence.
    detail: str
    query_id: str

    @classmethod
    def from_proto(cls, m: mpb.MatchAnswer) -> MatchAnswer:
        return cls(
            query=m.query,
            peer=m.peer,
            result=m.result,
            band=m.band,
            reference=m.reference,
            detail=m.detail,
            query_id=m.query_id,
        )


@dataclass(frozen=True)
class Disclosure(WireResult):
    """What the holder's supervisor learns from a disclosure or its check: how the person
    the follow-up seeks agrees with the record, and what was (or would be) done."""

    WIRE = opb.DiscloseResponse

    # "matches", "weak" or "does-not-match".
    agreement: str
    disclosed: bool
    overridden: bool
    # For a check: whether a disclosure would go now, else one sentence why not.
    allowed: bool
    problem: str
    case: CaseView | None

    @classmethod
    def from_proto(cls, m: opb.DiscloseResponse) -> Disclosure:
        return cls(
            agreement=m.agreement,
            disclosed=m.disclosed,
            overridden=m.overridden,
            allowed=m.allowed,
            problem=m.problem,
            case=CaseView.from_proto(m.case) if m.HasField("case") else None,
        )


# -- the officer ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhoAmI(WireResult):
    """The officer a credential names, as their node knows them, and the peers it sees."""

    WIRE = opb.WhoAmIResponse

    officer: str
    role: str
    agency: str
    directory_version: int
    peers: tuple[str, ...]
    # The certificates the officer listener presents now or after a TLS renewal (PEM).
    server_certificates: tuple[str, ...] = ()

    @classmethod
    def from_proto(cls, m: opb.WhoAmIResponse) -> WhoAmI:
        return cls(
            officer=m.officer,
            role=m.role,
            agency=m.agency,
            directory_version=m.directory_version,
            peers=tuple(m.peers),
            server_certificates=tuple(m.server_certificates),
        )


def _copy(message: _M) -> _M:
    """A detached copy: a result never shares a sub-message with the response it came from."""
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


__all__ = [
    "DUE_SOON_MS",
    "AttachmentInfo",
    "CaseEvent",
    "CaseSummary",
    "CaseView",
    "Clock",
    "MatchAnswer",
    "RecordsLoaded",
    "UploadStatus",
    "WhoAmI",
    "WireResult",
    "wire_json",
]
