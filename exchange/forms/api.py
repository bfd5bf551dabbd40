"""What the rest of MLAX calls: build forms and details from mappings or received bytes,
validate them, describe them for a timeline, and answer the case machinery's questions.
Each walks the field tables of `exchange.forms.requests` and `.details`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from exchange._proto.mlax.v1 import envelope_pb2
from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action, Urgency
from exchange.forms.base import MAX_DETAILS_BYTES, MAX_FORM_BYTES, CaseType, a, fail
from exchange.forms.blocks import SHARED_NAMES
from exchange.forms.details import DETAILS
from exchange.forms.reading import as_text, table
from exchange.forms.requests import REQUESTS
from exchange.forms.spec import Ctx, MessageSpec, Rows, check_message, read_fields, rows_of
from exchange.forms.vocab import ACTION_DETAILS, URGENCIES
from exchange.wire import parse

_CASE_TYPE_OF_ONEOF = {oneof: case_type for case_type, (oneof, _) in REQUESTS.items()}
_MESSAGE_TYPES = {
    CaseType.MLA: envelope_pb2.MESSAGE_TYPE_MLA_REQUEST,
    CaseType.EXTRADITION: envelope_pb2.MESSAGE_TYPE_EXTRADITION_REQUEST,
    CaseType.VICTIM_ID: envelope_pb2.MESSAGE_TYPE_VICTIM_ID_REQUEST,
}

_Request = pb.MlaRequest | pb.ExtraditionRequest | pb.VictimIdRequest

# --- forms ---------------------------------------------------------------------------------


def case_type_of(form: pb.CaseForm) -> CaseType:
    """The case type of a form; raise for an empty one."""
    which = form.WhichOneof("form")
    if which is None:
        fail("form", "the case form is empty: it needs an mla, extradition or victim_id request.")
    return _CASE_TYPE_OF_ONEOF[which]


def _request_of(form: pb.CaseForm) -> tuple[CaseType, MessageSpec, _Request]:
    case_type = case_type_of(form)
    oneof, spec = REQUESTS[case_type]
    request: _Request = getattr(form, oneof)
    return case_type, spec, request


def message_type_of(case_type: CaseType) -> int:
    """The envelope MessageType that carries a form of `case_type`."""
    return _MESSAGE_TYPES[case_type]


def validate_form(form: pb.CaseForm, *, now_ms: int | None) -> None:
    """Raise a `FormFieldError` (or `FormFieldTooLargeError`) for the first bad field.

    With `now_ms`, dates are also checked against the clock (deadline not passed, birth
    and warrant dates not in the future): the sender does this on entry. A receiving
    node passes None and checks structure only, since delivery can lag.
    """
    case_type, spec, request = _request_of(form)
    check_message(spec, request, "", Ctx(now_ms, case_type=case_type))


def form_from_bytes(data: bytes, *, now_ms: int | None = None) -> pb.CaseForm:
    """Parse a received form strictly (size, encoding, no unknown fields) and validate it."""
    form = parse(pb.CaseForm, data, "case form", MAX_FORM_BYTES)
    validate_form(form, now_ms=now_ms)
    return form


def urgency_of(form: pb.CaseForm) -> Urgency:
    """The urgency of a form, as the case state machine's enum."""
    term = URGENCIES.check("urgency", _request_of(form)[2].urgency)
    return Urgency(term.slug)


def parties_of(form: pb.CaseForm) -> tuple[str, str]:
    """(requesting agency id, requested agency id) of a form."""
    request = _request_of(form)[2]
    return request.requesting_authority.agency_id, request.requested_authority.agency_id


def deadline_of(form: pb.CaseForm) -> int | None:
    """The requested deadline (unix ms), or None when the form sets none."""
    return _request_of(form)[2].requested_deadline or None


def form_keys(case_type: CaseType) -> tuple[str, ...]:
    """The keys of a form file: `case_type`, the shared fields, then the form's own."""
    spec = REQUESTS[case_type][1]
    own = tuple(k for k in spec.keys if k not in SHARED_NAMES)
    shared = tuple(k for k in spec.keys if k in SHARED_NAMES)
    return ("case_type", *shared, *own)


def form_from_mapping(case_type: CaseType, data: Mapping[str, Any], *, now_ms: int) -> pb.CaseForm:
    """Build and validate a form from a mapping as parsed from TOML, JSON or CLI flags.

    Keys are the proto field names (docs/forms.md); vocabulary values are slugs;
    instants are ISO dates (end of that day, UTC) or ISO datetimes with a zone. An
    optional `case_type` key must agree with `case_type`. Unknown keys and values are
    rejected naming the field. The form is then checked with `validate_form(now_ms)`.
    """
    fields = table("", data, form_keys(case_type))
    if fields.get("case_type") is not None:
        stated = as_text("case_type", fields["case_type"]).lower().replace("_", "-")
        if stated != case_type.value:
            fail(
                "case_type",
                f"the form says {stated!r}, but it was read as {a(case_type.label)}.",
            )
    oneof, spec = REQUESTS[case_type]
    request: Any = read_fields(spec, "", fields)
    form = pb.CaseForm(**{oneof: request})
    validate_form(form, now_ms=now_ms)
    return form


def describe_form(form: pb.CaseForm) -> Rows:
    """(label, value) rows of a form for a case timeline; empty optional fields omitted."""
    case_type, spec, request = _request_of(form)
    return [("Case type", case_type.title), *rows_of(spec, request)]


# --- transition details --------------------------------------------------------------------


def validate_details(
    action: Action, details: pb.TransitionDetails, *, now_ms: int | None = None
) -> None:
    """Raise for details whose kind does not match `action`, or for their first bad field.

    With `now_ms`, a request for information's `reply_by` must also be in the future.
    """
    want = ACTION_DETAILS[action]
    have = details.WhichOneof("details")
    if want is None:
        if have is not None:
            fail(have, f"{action.value} carries no details: the case form is its content.")
        return
    kind: str = want
    if have != want:
        fail(
            "details",
            f"a {action.value} transition carries {want} details, not {have or 'none'}.",
        )
    check_message(DETAILS[kind], getattr(details, kind), "", Ctx(now_ms, action=action))


def details_from_bytes(
    action: Action, data: bytes, *, now_ms: int | None = None
) -> pb.TransitionDetails:
    """Parse received transition details strictly and validate them against `action`."""
    details = parse(pb.TransitionDetails, data, "transition details", MAX_DETAILS_BYTES)
    validate_details(action, details, now_ms=now_ms)
    return details


def details_from_mapping(
    action: Action, data: Mapping[str, Any], *, now_ms: int | None = None
) -> pb.TransitionDetails:
    """Build and validate the details of `action` from a mapping (TOML, JSON, CLI flags).

    Keys are the fields of the action's details message; `final` of a report follows
    from the action. SUBMIT takes an empty mapping: the form is its content.
    """
    kind = ACTION_DETAILS[action]
    if kind is None:
        if data:
            fail("details", f"{action.value} carries no details: the case form is its content.")
        return pb.TransitionDetails()
    spec = DETAILS[kind]
    message: Any = read_fields(spec, "", table("", data, spec.keys))
    if kind == "report":
        message.final = action is Action.REPORT_EXECUTED
    details = pb.TransitionDetails(**{kind: message})
    validate_details(action, details, now_ms=now_ms)
    return details


def describe_details(details: pb.TransitionDetails) -> Rows:
    """(label, value) rows of transition details for a case timeline."""
    kind = details.WhichOneof("details")
    return [] if kind is None else rows_of(DETAILS[kind], getattr(details, kind))
