"""The follow-up to a victim-identification hit, on the holder's side.

A hit carries an opaque reference (`reference_of`): the holder's agency id and the
random handle of the record. The querier's follow-up is a formal victim-identification
case naming that reference and the person it is looking for; once the holder has
accepted it and started execution, its supervisor discloses the identity behind the
handle (`disclose`), which is ledgered.

Handles are published, so a reference alone proves no hit: a querier could copy one
from the index for a record it never queried. Before anything is disclosed the node
grades the person sought against the record (`exchange.matching.compare`), the
supervisor sees that grade, and `allows` is the one rule every path obeys: a person
who does not match the record is disclosed only on the supervisor's explicit override
with a reason, which the ledger records (the reason as its length and digest only).
`record_text` / `record_fields` are the sealed form of a held record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import Action, CaseState, Party
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from exchange.forms.base import TEXT_CHARS, FormFieldError
from exchange.forms.checks import check_text
from exchange.forms.requests import victim_sought
from exchange.ledger_entry import LedgerEntry
from exchange.matching.compare import Agreement, agreement
from exchange.matching.records import QUERY_COLUMNS, VictimRecord, parse_csv_row
from node.services.case_store import check_may_act, local_of
from node.services.cases import CaseDesk, CaseStaleError
from node.services.messages import NodeCore, NotFoundError, Officer, PermissionDeniedError
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


@dataclass(frozen=True)
class Disclosure:
    """What a Disclose call found and did: the grade of the person sought against the
    record, whether the identity was sent (on an override of a mismatch), and for a
    check, whether a disclosure would go now or the one sentence why not."""

    agreement: Agreement
    disclosed: bool = False
    overridden: bool = False
    allowed: bool = False
    problem: str = ""


def allows(case_ref: str, found: Agreement, override: bool, reason: str) -> bool:
    """The disclosure rule: raise unless the identity may go; True when it goes on the
    supervisor's override of a mismatch (which needs a reason, `check_reason`)."""
    if found is not Agreement.DOES_NOT_MATCH:
        return False
    if not override:
        raise CaseStaleError(
            f"The person case {case_ref} seeks does not match the record behind its "
            "reference: disclose it only with an explicit override and a reason."
        )
    check_reason(override, reason)
    return True


def check_reason(override: bool, reason: str) -> None:
    """A reason goes with an override, and an override needs one: 1 to 4,000 characters."""
    if reason and not override:
        raise InvalidFieldError("A reason goes only with an override of a mismatch.")
    if override:
        try:
            check_text(
                "override_reason",
                reason,
                TEXT_CHARS,
                required="an override of a mismatch needs a reason.",
                multiline=True,
            )
        except FormFieldError as e:
            raise InvalidFieldError(e.message) from None


def sought_agreement(form: fpb.CaseForm, record: VictimRecord) -> Agreement:
    """The person a victim-identification form seeks against a held record; a form
    without a usable person (a case from before the person was required) matches nothing."""
    request = form.victim_id
    if not request.HasField("person"):
        return Agreement.DOES_NOT_MATCH
    try:
        sought = victim_sought(request.person)
    except FormFieldError:
        return Agreement.DOES_NOT_MATCH
    return agreement(sought, record)


_SAID = {
    Agreement.MATCHES: "the person sought matches this record",
    Agreement.WEAK: "the person sought agrees only weakly with this record",
    Agreement.DOES_NOT_MATCH: "the person sought does not match this record",
}


def disclose(
    core: NodeCore,
    cases: CaseDesk,
    officer: Officer,
    case_ref: str,
    *,
    check_only: bool = False,
    override: bool = False,
    reason: str = "",
) -> Disclosure:
    """Grade the person a victim-identification case seeks against the record behind its
    reference and, unless `check_only`, send the identity (ledgered) if `allows` it."""
    check_reason(override, reason)
    with core.db.read() as s:
        row = s.scalars(select(CaseRow).where(CaseRow.case_ref == case_ref)).first()
        if row is None:
            raise NotFoundError(f"No case {case_ref[:128]} on this node.")
        if row.case_type != "victim-id" or row.role != Party.REQUESTED.value:
            raise CaseStaleError(
                f"Case {case_ref} is not a victim-identification request to this agency."
            )
        s.expunge(row)
    # Disclosing is acting on the case: only who may read it (the person it seeks).
    check_may_act(core.db, core.agency, officer, row, "disclose")
    with core.db.read() as s:
        row = s.scalars(select(CaseRow).where(CaseRow.case_ref == case_ref)).one()
        # As the case stands with this node's queued steps (the step rule): the
        # disclosure queues behind a start of execution still on its way to the peer.
        state = local_of(s, row)[0].state
        form = fpb.CaseForm.FromString(core.open_from_self(row.form_sealed))
    agency, handle = parse_reference(form.victim_id.match_reference)
    if agency != core.agency:
        raise PermissionDeniedError(
            f"The reference in case {case_ref} names {agency}, not this agency."
        )
    with core.db.read() as s:
        held = s.scalars(select(MatchRecordRow).where(MatchRecordRow.handle == handle)).first()
        if held is None or held.removed:
            raise CaseStaleError(f"The record behind case {case_ref} is no longer held here.")
        fields = record_fields(held.ref, core.open_from_self(held.record_sealed))
    found = sought_agreement(form, parse_csv_row(fields, 0))
    try:
        if state != CaseState.IN_EXECUTION:
            raise CaseStaleError(
                f"Case {case_ref} is {state.value}: accept it and start execution first."
            )
        overridden = allows(case_ref, found, override, reason)
    except CaseStaleError as e:
        if check_only:
            return Disclosure(found, problem=e.message)
        raise
    if check_only:
        return Disclosure(found, allowed=True)
    lines = [f"{k.replace('_', ' ')}: {v}" for k, v in fields.items() if k != "ref" and v]
    said = _SAID[found] + (" (disclosed on the supervisor's override)" if overridden else "")
    details = forms.details_from_mapping(
        Action.REPORT_EXECUTED,
        {
            "summary": "Identity disclosed on supervisor approval.\n"
            + "\n".join(lines)
            + f"\nAgreement: {said}."
        },
    )
    because: dict[str, str | int | bool] = (
        {
            "reason_chars": len(reason),
            "reason_sha256": hashlib.sha256(reason.encode()).hexdigest(),
        }
        if overridden
        else {}
    )
    disclosed = LedgerEntry.of(
        "match.disclosed",
        now_ms(),
        case_ref=case_ref,
        handle=handle.hex(),
        supervisor=officer.name,
        agreement=found.value,
        overridden=overridden,
        **because,
    )
    # The identity's step and its ledger entry are stored together: no disclosure goes
    # unledgered, whatever stops the node (and the step model refuses a second one).
    cases.steps.send(officer, case_ref, Action.REPORT_EXECUTED, details, also=(disclosed,))
    return Disclosure(found, disclosed=True, overridden=overridden)
