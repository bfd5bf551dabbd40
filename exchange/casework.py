"""Case transitions on the wire: building them, and checking one a peer sent.

Every step of a case travels as the sealed body of a signed envelope
(`CaseTransitionBody`): the submission carries the request form, each later step the
details of what was decided. Bodies form a hash chain (`seq`, `prev_digest`), so both
nodes hold the same history and can compare it by one digest. A receiving node applies
`check_submission` or `check_transition` before it stores the envelope: a transition
that does not extend its copy of the chain, is illegal in the case's state, or comes
from the party not entitled to it is refused and changes nothing.

Pure: no I/O. The node supplies the case as it holds it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from hashlib import sha256

from exchange import forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import Action, Case, CaseState, IllegalTransitionError, Transition
from exchange.encoding import CTX_CASE_APPROVAL, CTX_CASE_TRANSITION, pae
from exchange.envelope import Header, MessageType
from exchange.errors import ConflictError, InvalidFieldError, RetryLaterError, Status
from exchange.wire import parse

MAX_BODY = 1 << 20

ACTION_TO_WIRE: dict[Action, cpb.CaseAction.ValueType] = {
    Action.SUBMIT: cpb.CASE_ACTION_SUBMIT,
    Action.ACKNOWLEDGE: cpb.CASE_ACTION_ACKNOWLEDGE,
    Action.REQUEST_INFO: cpb.CASE_ACTION_REQUEST_INFO,
    Action.PROVIDE_INFO: cpb.CASE_ACTION_PROVIDE_INFO,
    Action.ACCEPT: cpb.CASE_ACTION_ACCEPT,
    Action.REFUSE: cpb.CASE_ACTION_REFUSE,
    Action.START_EXECUTION: cpb.CASE_ACTION_START_EXECUTION,
    Action.REPORT_PARTIAL: cpb.CASE_ACTION_REPORT_PARTIAL,
    Action.REPORT_EXECUTED: cpb.CASE_ACTION_REPORT_EXECUTED,
    Action.WITHDRAW: cpb.CASE_ACTION_WITHDRAW,
    Action.CLOSE: cpb.CASE_ACTION_CLOSE,
}
WIRE_TO_ACTION: dict[int, Action] = {int(v): k for k, v in ACTION_TO_WIRE.items()}

CASE_TYPE_NAMES = {
    forms.CaseType.MLA: "mla",
    forms.CaseType.EXTRADITION: "extradition",
    forms.CaseType.VICTIM_ID: "victim-id",
}


class CaseConflictError(ConflictError):
    """A transition that does not extend the receiver's copy of the case's history.

    Both parties acted at once, or the sender's history differs: the officer must look
    at the case again. Delivery does not retry it.
    """

    status = Status.ABORTED


class CaseNotYetError(RetryLaterError):
    """A transition that skips one the receiver has not applied yet; retried later."""

    status = Status.UNAVAILABLE


def case_ref_of(agency: str) -> re.Pattern[str]:
    """The references `agency` may open cases under: AGENCY-YYYY-NNNNN (5 or more digits).

    Matched in full, so one agency cannot claim another's namespace even when one id
    extends the other (GB-NCA and GB-NCA-SOUTH).
    """
    return re.compile(re.escape(agency) + r"-\d{4}-\d{5,}")


def action_of(wire: int) -> Action:
    try:
        return WIRE_TO_ACTION[wire]
    except KeyError:
        raise InvalidFieldError("Field action: unknown or missing case action.") from None


def transition_digest(body: bytes) -> bytes:
    """The chain link naming one transition: SHA-256(PAE(ctx, body bytes))."""
    return sha256(pae(CTX_CASE_TRANSITION, body)).digest()


def form_digest(form: fpb.CaseForm) -> bytes:
    """SHA-256 of the form's deterministic encoding: what a supervisor approves."""
    return sha256(form.SerializeToString(deterministic=True)).digest()


def approval_message(case_ref: str, digest: bytes, supervisor: str, at_ms: int) -> bytes:
    """What a supervisor signs to approve a draft (four-eyes)."""
    return pae(
        CTX_CASE_APPROVAL,
        case_ref.encode(),
        digest,
        supervisor.encode(),
        at_ms.to_bytes(8, "big", signed=True),
    )


def parse_body(data: bytes) -> cpb.CaseTransitionBody:
    return parse(cpb.CaseTransitionBody, data, "case transition body", MAX_BODY, canonical=True)


def reason_of(action: Action, details: fpb.TransitionDetails) -> str:
    """The stated grounds the state machine insists on for a refusal."""
    if action is Action.REFUSE and details.WhichOneof("details") == "refuse":
        refusal = details.refuse
        grounds = [forms.REFUSAL_GROUNDS.label(g) for g in refusal.grounds]
        return "; ".join([*grounds, refusal.explanation]).strip("; ")
    return ""


@dataclass(frozen=True)
class Applied:
    """A checked transition: the case after it, and its chain digest."""

    case: Case
    body: cpb.CaseTransitionBody
    digest: bytes
    action: Action


def build(
    case: Case,
    *,
    action: Action,
    party_agency: str,
    seq: int,
    prev_digest: bytes,
    at_ms: int,
    officer: str,
    details: fpb.TransitionDetails | None = None,
    form: fpb.CaseForm | None = None,
    approval: cpb.CaseApproval | None = None,
) -> tuple[bytes, Applied]:
    """A transition's body bytes, checked against the same machine the peer will run."""
    if action is Action.SUBMIT:
        if form is None:
            raise InvalidFieldError("Field form: a submission carries its request form.")
        if approval is not None and approval.form_digest != form_digest(form):
            raise InvalidFieldError("Field approval: it approves another form than this one.")
    elif form is not None:
        raise InvalidFieldError("Field form: only the submission carries the request form.")
    forms.validate_details(action, details or fpb.TransitionDetails())
    body = cpb.CaseTransitionBody(
        case_ref=case.case_ref,
        action=ACTION_TO_WIRE[action],
        seq=seq,
        prev_digest=prev_digest,
        at=at_ms,
        officer=officer,
    )
    if form is not None:
        body.form.CopyFrom(form)
    if details is not None:
        body.details.CopyFrom(details)
    if approval is not None:
        body.approval.CopyFrom(approval)
    data = body.SerializeToString(deterministic=True)
    party = case.party_of(party_agency)
    after = case.apply(
        Transition(case.case_ref, action, party, at_ms, reason_of(action, body.details))
    )
    return data, Applied(after, body, transition_digest(data), action)


def check_submission(header: Header, data: bytes) -> Applied:
    """A peer's submission of a new case to this node, checked in full."""
    body = parse_body(data)
    action = action_of(body.action)
    if action is not Action.SUBMIT:
        raise CaseConflictError(
            f"Case {body.case_ref[:128]} is not known here; its first step must be a submission."
        )
    _check_envelope(header, body)
    if body.seq != 1 or body.prev_digest:
        raise InvalidFieldError("Field seq: a submission is transition 1 and has no predecessor.")
    if not body.HasField("form"):
        raise InvalidFieldError("Field form: a submission carries its request form.")
    forms.validate_details(Action.SUBMIT, body.details)
    forms.validate_form(body.form, now_ms=None)
    if body.HasField("approval") and body.approval.form_digest != form_digest(body.form):
        raise InvalidFieldError("Field approval: it approves another form than this one.")
    case_type = forms.case_type_of(body.form)
    if header.message_type.value != forms.message_type_of(case_type):
        raise InvalidFieldError(
            f"Field message_type: a {CASE_TYPE_NAMES[case_type]} submission travels as "
            f"{MessageType(forms.message_type_of(case_type)).name}."
        )
    requesting, requested = forms.parties_of(body.form)
    if (requesting, requested) != (header.sender, header.recipient):
        raise InvalidFieldError(
            "Field form: the requesting and requested authorities must be the envelope's "
            "sender and recipient."
        )
    if not case_ref_of(header.sender).fullmatch(body.case_ref):
        raise InvalidFieldError(
            f"Field case_ref: a case reference of {header.sender} reads {header.sender}-YYYY-NNNNN."
        )
    case = Case(
        case_ref=body.case_ref,
        requesting_agency=requesting,
        requested_agency=requested,
        urgency=forms.urgency_of(body.form),
        opened_at=body.at,
    )
    after = case.apply(
        Transition(body.case_ref, Action.SUBMIT, case.party_of(header.sender), body.at)
    )
    return Applied(after, body, transition_digest(data), Action.SUBMIT)


def check_transition(
    case: Case, head_seq: int, head_digest: bytes, header: Header, data: bytes
) -> Applied:
    """A peer's later transition of `case`, which this node holds at `head_seq`."""
    body = parse_body(data)
    action = action_of(body.action)
    _check_envelope(header, body)
    if body.case_ref != case.case_ref:
        raise InvalidFieldError("Field case_ref: the transition names another case.")
    if header.message_type is not MessageType.CASE_TRANSITION:
        raise InvalidFieldError("Field message_type: a case transition travels as CASE_TRANSITION.")
    if body.HasField("form"):
        raise InvalidFieldError("Field form: only the submission carries the request form.")
    if body.seq > head_seq + 1:
        raise CaseNotYetError(
            f"Case {case.case_ref} is at step {head_seq} here; step {body.seq} must wait "
            "for the steps before it."
        )
    if body.seq != head_seq + 1 or body.prev_digest != head_digest:
        raise CaseConflictError(
            f"Case {case.case_ref} already has a step {body.seq} here, or a different "
            "history: look at the case and act again."
        )
    forms.validate_details(action, body.details)
    try:
        after = case.apply(
            Transition(
                case.case_ref,
                action,
                case.party_of(header.sender),
                body.at,
                reason_of(action, body.details),
            )
        )
    except IllegalTransitionError as e:
        raise CaseConflictError(e.message) from None
    return Applied(after, body, transition_digest(data), action)


def _check_envelope(header: Header, body: cpb.CaseTransitionBody) -> None:
    if body.case_ref != header.case_ref:
        raise InvalidFieldError("Field case_ref: the body names another case than its header.")
    if body.at != header.created_at:
        raise InvalidFieldError(
            "Field at: a transition's time is its envelope's signed creation time."
        )


def state_name(state: CaseState) -> str:
    return state.value
