"""The follow-up to a victim-identification hit, on the holder's side.

A hit carries an opaque reference (`reference_of`): the holder's agency id and the
random handle of the record. The querier's follow-up is a formal victim-identification
case naming that reference; once the holder has accepted it and started execution, its
supervisor discloses the identity behind the handle (`disclose`), which is ledgered.
`record_text` / `record_fields` are the sealed form of a held record.
"""

from __future__ import annotations

from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import Action, CaseState, Party
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from exchange.ledger_entry import LedgerEntry
from exchange.matching.records import QUERY_COLUMNS, VictimRecord
from node.services.case_store import local_of
from node.services.cases import CaseDesk, CaseStaleError
from node.services.messages import NodeCore, NotFoundError, Officer, PermissionDeniedError
from node.storage import ledger
from node.storage.models import CaseRow, MatchRecordRow

_FIELDS = QUERY_COLUMNS


def reference_of(peer: str, handle: bytes) -> str:
    """The opaque reference a hit carries: the holder's agency id and the record's handle."""
    return f"{peer}:{handle.hex()}"


def parse_reference(reference: str) -> tuple[str, bytes]:
    agency, sep, handle = reference.rpartition(":")
    try:
        raw = bytes.fromhex(handle)
    except ValueError:
        raw = b""
    if not sep or not agency or len(raw) != 16:
        raise InvalidFieldError(
            f"{reference[:80]!r} is not a match reference (AGENCY:32 hex digits)."
        )
    return agency, raw


def record_text(record: VictimRecord) -> bytes:
    dob = record.date_of_birth
    fields = [
        record.given_name,
        record.family_name,
        record.sex,
        str(dob) if dob is not None else "",
        record.nationality,
        record.place_of_birth,
    ]
    return "\x1f".join(fields).encode()


def record_fields(ref: str, data: bytes) -> dict[str, str]:
    values = data.decode().split("\x1f")
    return dict(zip(_FIELDS, values, strict=True)) | {"ref": ref}


def disclose(core: NodeCore, cases: CaseDesk, officer: Officer, case_ref: str) -> str:
    """Send the identity behind a victim-identification case's reference (ledgered)."""
    with core.db.read() as s:
        row = s.scalars(select(CaseRow).where(CaseRow.case_ref == case_ref)).first()
        if row is None:
            raise NotFoundError(f"No case {case_ref[:128]} on this node.")
        if row.case_type != "victim-id" or row.role != Party.REQUESTED.value:
            raise CaseStaleError(
                f"Case {case_ref} is not a victim-identification request to this agency."
            )
        # As the case stands with this node's queued steps (the step rule): the
        # disclosure queues behind a start of execution still on its way to the peer.
        local = local_of(s, row)[0]
        if local.state != CaseState.IN_EXECUTION:
            raise CaseStaleError(
                f"Case {case_ref} is {local.state.value}: accept it and start execution first."
            )
        form = fpb.CaseForm.FromString(core.open_from_self(row.form_sealed))
    agency, handle = parse_reference(form.victim_id.match_reference)
    if agency != core.agency:
        raise PermissionDeniedError(
            f"The reference in case {case_ref} names {agency}, not this agency."
        )
    with core.db.read() as s:
        record = s.scalars(select(MatchRecordRow).where(MatchRecordRow.handle == handle)).first()
        if record is None or record.removed:
            raise CaseStaleError(f"The record behind case {case_ref} is no longer held here.")
        fields = record_fields(record.ref, core.open_from_self(record.record_sealed))
    lines = [f"{k.replace('_', ' ')}: {v}" for k, v in fields.items() if k != "ref" and v]
    details = forms.details_from_mapping(
        Action.REPORT_EXECUTED,
        {"summary": "Identity disclosed on supervisor approval.\n" + "\n".join(lines)},
    )
    cases.steps.send(officer, case_ref, Action.REPORT_EXECUTED, details)
    with core.db.write() as s:
        ledger.append(
            s,
            LedgerEntry.of(
                "match.disclosed",
                now_ms(),
                case_ref=case_ref,
                handle=handle.hex(),
                supervisor=officer.name,
            ),
        )
    return case_ref
