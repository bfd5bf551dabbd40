"""Case transitions on the wire: built by one agency, sealed, opened and checked by the other.

Two simulated agencies (GB-NCA requesting, NG-NAPTIP requested, as in the example forms
of deploy/forms/) each hold their own copy of a case. Every step is built with
`casework.build` from the actor's copy, sealed in a real envelope, opened by the other
agency and checked with `check_submission` / `check_transition` against its copy; the
actor applies its own step as the node does when the receipt arrives. Both copies must
agree after every step, and every refusal must name the right error and gRPC status.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from factories import DAY, HOUR, MINUTE, SECOND, T0, FederationSimulator, SimAgency

from exchange import casework, forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import (
    Action,
    Case,
    CaseState,
    IllegalTransitionError,
    NotEntitledError,
    Party,
    TransitionOrderError,
    Urgency,
)
from exchange.casework import (
    Applied,
    CaseConflictError,
    CaseNotYetError,
    approval_message,
    check_submission,
    check_transition,
    form_digest,
    transition_digest,
)
from exchange.directory import Directory
from exchange.encoding import CTX_CASE_APPROVAL, CTX_CASE_TRANSITION, key_id, pae, uuid7
from exchange.envelope import Header, MemorySeenIds, MessageType, Opened, Suite, open_envelope, seal
from exchange.errors import InvalidFieldError, MalformedError, MlaxError, OversizedError

ROOT = Path(__file__).resolve().parents[2]
FORMS_DIR = ROOT / "deploy" / "forms"
VECTORS = ROOT / "docs" / "vectors"
DOC = ROOT / "docs" / "protocol-casework.md"

REQUESTING = "GB-NCA"
REQUESTED = "NG-NAPTIP"
OUTSIDER = "FR-OCRTEH"
# 2026-11-20T00:00:00Z: after the example warrant's date, inside the simulated keys' validity.
NOW = T0 + 323 * DAY
REF = f"{REQUESTING}-2026-00001"
MLA, EXTRADITION = forms.CaseType.MLA, forms.CaseType.EXTRADITION


def le64(n: int) -> bytes:
    return struct.pack("<Q", n)


# --- the federation and the forms ----------------------------------------------------------


@cache
def federation() -> FederationSimulator:
    fed = FederationSimulator()
    for agency in (REQUESTING, REQUESTED, OUTSIDER):
        fed.add_agency(agency)
    return fed


@cache
def directory() -> Directory:
    return federation().directory()


def agency(agency_id: str) -> SimAgency:
    return federation().agencies[agency_id]


@cache
def _form_bytes(case_type: forms.CaseType) -> bytes:
    name = {MLA: "mla-request.toml", EXTRADITION: "extradition-request.toml"}[case_type]
    data = tomllib.loads((FORMS_DIR / name).read_text(encoding="utf-8"))
    form = forms.form_from_mapping(case_type, data, now_ms=NOW)
    return form.SerializeToString(deterministic=True)


def example_form(case_type: forms.CaseType = MLA) -> fpb.CaseForm:
    """A fresh copy of the example form of `case_type` (tests may change it)."""
    return fpb.CaseForm.FromString(_form_bytes(case_type))


def details(action: Action, data: Mapping[str, Any] | None = None) -> fpb.TransitionDetails:
    return forms.details_from_mapping(action, data or DETAILS.get(action, {}))


DETAILS: dict[Action, dict[str, Any]] = {
    Action.ACKNOWLEDGE: {"reference": "NAPTIP/MLA/2026/0077", "note": "Assigned to Edo State."},
    Action.REQUEST_INFO: {"questions": ["Which branch holds account 0007654321?"]},
    Action.PROVIDE_INFO: {"answers": "The Ring Road branch, Benin City."},
    Action.ACCEPT: {"conditions": ["Evidence used only in the proceedings named."]},
    Action.REFUSE: {
        "grounds": ["no-dual-criminality"],
        "explanation": "The conduct is not an offence under the law of the requested state.",
    },
    Action.START_EXECUTION: {"executing_authority": "NAPTIP Benin Zonal Command"},
    Action.REPORT_PARTIAL: {
        "summary": "Statements of the first account obtained.",
        "assistance_executed": ["banking-records"],
    },
    Action.REPORT_EXECUTED: {
        "summary": "All statements obtained; balances frozen.",
        "assistance_executed": ["banking-records", "freezing-of-assets"],
    },
    Action.WITHDRAW: {"reason": "The suspect was arrested in the United Kingdom."},
    Action.CLOSE: {"outcome": "Evidence received and used at trial."},
}


# --- two nodes, each with its copy of the case ---------------------------------------------


@dataclass
class Copy:
    """One agency's copy of one case, as its node holds it."""

    agency_id: str
    case: Case | None = None
    seq: int = 0
    head: bytes = b""
    digests: list[bytes] = field(default_factory=list)

    def apply(self, applied: Applied) -> None:
        assert applied.body.seq == self.seq + 1
        self.case, self.seq, self.head = applied.case, applied.body.seq, applied.digest
        self.digests.append(applied.digest)


@dataclass(frozen=True)
class Step:
    """One delivered transition: what the receiver opened, and what both sides computed."""

    header: Header
    body: bytes
    sent: Applied
    received: Applied


def deliver(
    sender: str,
    recipient: str,
    body: bytes,
    message_type: MessageType,
    *,
    at: int,
    case_ref: str = REF,
) -> Opened:
    """Seal `body` from `sender` to `recipient` at `at` and open it as the recipient does."""
    envelope = seal(
        agency(sender).sender(),
        agency(recipient).card,
        body,
        message_type,
        now_ms=at,
        case_ref=case_ref,
    )
    return open_envelope(
        envelope.to_bytes(),
        directory(),
        agency(recipient).recipient(),
        MemorySeenIds(),
        now_ms=at + SECOND,
    )


def check_raw(holder: Copy, header: Header, body: bytes) -> Applied:
    """What the receiving node runs on a case envelope's header and body, against its copy."""
    if holder.case is None:
        return check_submission(header, body)
    return check_transition(holder.case, holder.seq, holder.head, header, body)


def check(holder: Copy, opened: Opened) -> Applied:
    return check_raw(holder, opened.header, opened.body)


class Exchange:
    """A case between GB-NCA (requesting) and NG-NAPTIP (requested), step by step."""

    def __init__(self, case_type: forms.CaseType = MLA) -> None:
        self.form = example_form(case_type)
        self.case_type = case_type
        draft = Case(
            case_ref=REF,
            requesting_agency=REQUESTING,
            requested_agency=REQUESTED,
            urgency=forms.urgency_of(self.form),
            opened_at=NOW - HOUR,
        )
        self.copies = {REQUESTING: Copy(REQUESTING, draft), REQUESTED: Copy(REQUESTED)}
        self.clock = NOW
        self.steps: list[Step] = []

    def tick(self) -> int:
        self.clock += MINUTE
        return self.clock

    def peer(self, agency_id: str) -> str:
        return REQUESTED if agency_id == REQUESTING else REQUESTING

    def build(
        self, actor: str, action: Action, *, at: int | None = None, **kwargs: Any
    ) -> tuple[bytes, Applied]:
        mine = self.copies[actor]
        assert mine.case is not None
        if action is Action.SUBMIT:
            kwargs.setdefault("form", self.form)
        elif "details" not in kwargs:
            kwargs["details"] = details(action)
        return casework.build(
            mine.case,
            action=action,
            party_agency=actor,
            seq=mine.seq + 1,
            prev_digest=mine.head,
            at_ms=self.tick() if at is None else at,
            officer=f"officer.{actor.lower()}",
            **kwargs,
        )

    def message_type(self, action: Action) -> MessageType:
        if action is Action.SUBMIT:
            return MessageType(forms.message_type_of(self.case_type))
        return MessageType.CASE_TRANSITION

    def act(self, actor: str, action: Action, **kwargs: Any) -> Step:
        """`actor` takes `action`; the peer checks and applies it; then the actor applies it."""
        body, sent = self.build(actor, action, **kwargs)
        opened = deliver(actor, self.peer(actor), body, self.message_type(action), at=sent.body.at)
        assert opened.body == body
        received = check(self.copies[self.peer(actor)], opened)
        self.copies[self.peer(actor)].apply(received)
        # The sender applies its own transition once the peer's receipt arrives.
        self.copies[actor].apply(sent)
        step = Step(opened.header, body, sent, received)
        self.steps.append(step)
        return step

    def send(self, actor: str, body: bytes, message_type: MessageType, at: int) -> Opened:
        return deliver(actor, self.peer(actor), body, message_type, at=at)

    def refused_by(self, receiver: str, opened: Opened) -> None:
        """Assert the receiver's copy is unchanged by a refused envelope (checks are pure)."""
        copy = self.copies[receiver]
        before = (copy.case, copy.seq, copy.head)
        with pytest.raises(MlaxError):
            check(copy, opened)
        assert (copy.case, copy.seq, copy.head) == before

    def assert_in_step(self) -> None:
        a, b = self.copies[REQUESTING], self.copies[REQUESTED]
        assert a.case is not None
        assert b.case is not None
        assert a.case.state is b.case.state
        assert a.case.history == b.case.history
        assert (a.seq, a.head, a.digests) == (b.seq, b.head, b.digests)


def submitted(case_type: forms.CaseType = MLA) -> Exchange:
    ex = Exchange(case_type)
    ex.act(REQUESTING, Action.SUBMIT)
    return ex


def acknowledged() -> Exchange:
    ex = submitted()
    ex.act(REQUESTED, Action.ACKNOWLEDGE)
    return ex


def raw_body(
    *,
    action: Action,
    seq: int,
    prev_digest: bytes,
    at: int,
    case_ref: str = REF,
    officer: str = "officer.x",
    details: fpb.TransitionDetails | None = None,
    form: fpb.CaseForm | None = None,
    approval: cpb.CaseApproval | None = None,
) -> bytes:
    """A body built by hand, for steps `casework.build` would refuse to make."""
    body = cpb.CaseTransitionBody(
        case_ref=case_ref,
        action=casework.ACTION_TO_WIRE[action],
        seq=seq,
        prev_digest=prev_digest,
        at=at,
        officer=officer,
    )
    if details is not None:
        body.details.CopyFrom(details)
    if form is not None:
        body.form.CopyFrom(form)
    if approval is not None:
        body.approval.CopyFrom(approval)
    return body.SerializeToString(deterministic=True)


def expect(error: type[MlaxError], status: str, call: Any, match: str | None = None) -> None:
    assert error.status == status
    with pytest.raises(error, match=match) as raised:
        call()
    assert raised.value.status == status


# --- round trips ----------------------------------------------------------------------------

MLA_LIFECYCLE: list[tuple[str, Action, CaseState]] = [
    (REQUESTING, Action.SUBMIT, CaseState.SUBMITTED),
    (REQUESTED, Action.ACKNOWLEDGE, CaseState.ACKNOWLEDGED),
    (REQUESTED, Action.REQUEST_INFO, CaseState.MORE_INFO_REQUESTED),
    (REQUESTING, Action.PROVIDE_INFO, CaseState.ACKNOWLEDGED),
    (REQUESTED, Action.ACCEPT, CaseState.ACCEPTED),
    (REQUESTED, Action.START_EXECUTION, CaseState.IN_EXECUTION),
    (REQUESTED, Action.REPORT_PARTIAL, CaseState.PARTIALLY_EXECUTED),
    (REQUESTED, Action.REPORT_PARTIAL, CaseState.PARTIALLY_EXECUTED),
    (REQUESTED, Action.REPORT_EXECUTED, CaseState.EXECUTED),
    (REQUESTING, Action.CLOSE, CaseState.CLOSED),
]
EXTRADITION_LIFECYCLE: list[tuple[str, Action, CaseState]] = [
    (REQUESTING, Action.SUBMIT, CaseState.SUBMITTED),
    (REQUESTED, Action.ACKNOWLEDGE, CaseState.ACKNOWLEDGED),
    (REQUESTED, Action.REFUSE, CaseState.REFUSED),
    (REQUESTING, Action.CLOSE, CaseState.CLOSED),
]
WITHDRAWN_LIFECYCLE: list[tuple[str, Action, CaseState]] = [
    (REQUESTING, Action.SUBMIT, CaseState.SUBMITTED),
    (REQUESTED, Action.REQUEST_INFO, CaseState.MORE_INFO_REQUESTED),
    (REQUESTING, Action.WITHDRAW, CaseState.WITHDRAWN),
    (REQUESTING, Action.CLOSE, CaseState.CLOSED),
]


def run(case_type: forms.CaseType, lifecycle: list[tuple[str, Action, CaseState]]) -> Exchange:
    ex = Exchange(case_type)
    for n, (actor, action, state) in enumerate(lifecycle, start=1):
        step = ex.act(actor, action)
        assert step.header.sender == actor
        assert step.header.message_type is ex.message_type(action)
        assert step.header.case_ref == REF
        assert step.received.case.state is state
        assert step.received.action is action
        assert step.received.body.seq == n
        assert step.received.digest == step.sent.digest == transition_digest(step.body)
        ex.assert_in_step()
    return ex


@pytest.mark.parametrize(
    ("case_type", "lifecycle"),
    [
        pytest.param(MLA, MLA_LIFECYCLE, id="mla-executed"),
        pytest.param(EXTRADITION, EXTRADITION_LIFECYCLE, id="extradition-refused"),
        pytest.param(MLA, WITHDRAWN_LIFECYCLE, id="mla-withdrawn"),
    ],
)
def test_lifecycle_round_trip_keeps_both_copies_in_step(
    case_type: forms.CaseType, lifecycle: list[tuple[str, Action, CaseState]]
) -> None:
    ex = run(case_type, lifecycle)
    first, last = ex.steps[0], ex.steps[-1]
    # The chain: each body names its predecessor's digest.
    assert first.received.body.prev_digest == b""
    for before, after in zip(ex.steps, ex.steps[1:], strict=False):
        assert after.received.body.prev_digest == before.received.digest
    assert last.received.case.state is CaseState.CLOSED
    # The submission carries the form as it was built, byte for byte.
    assert first.received.body.form == ex.form
    assert forms.parties_of(first.received.body.form) == (REQUESTING, REQUESTED)
    assert first.received.case.urgency is forms.urgency_of(ex.form)
    # Parties as each side recorded them.
    parties = [t.party for t in last.received.case.history]
    assert parties == [
        Party.REQUESTING if actor == REQUESTING else Party.REQUESTED for actor, _, _ in lifecycle
    ]


def test_a_refusal_records_its_grounds() -> None:
    ex = run(EXTRADITION, EXTRADITION_LIFECYCLE[:3])
    refusal = ex.steps[-1].received.case.history[-1]
    assert refusal.action is Action.REFUSE
    assert "The conduct is not an offence" in refusal.reason


def test_replaying_the_same_bodies_reaches_the_same_state_and_digests() -> None:
    """A node rebuilding the case from its stored envelopes gets what both copies hold."""
    ex = run(MLA, MLA_LIFECYCLE)
    for _ in range(2):  # on either node, any number of times
        replayed = Copy("replay")
        states = []
        for step in ex.steps:
            if replayed.case is None:
                applied = check_submission(step.header, step.body)
            else:
                applied = check_transition(
                    replayed.case, replayed.seq, replayed.head, step.header, step.body
                )
            replayed.apply(applied)
            states.append(applied.case.state)
        assert states == [s for _, _, s in MLA_LIFECYCLE]
        for copy in ex.copies.values():
            assert copy.case is not None
            assert replayed.case is not None
            assert replayed.case.state is copy.case.state
            assert replayed.case.history == copy.case.history
            assert (replayed.seq, replayed.head, replayed.digests) == (
                copy.seq,
                copy.head,
                copy.digests,
            )


def test_build_checks_its_own_step_against_the_machine() -> None:
    ex = submitted()
    with pytest.raises(NotEntitledError):
        ex.build(REQUESTING, Action.ACKNOWLEDGE)
    with pytest.raises(IllegalTransitionError):
        ex.build(REQUESTED, Action.ACCEPT)  # illegal in SUBMITTED: the sender refuses it too
    with pytest.raises(InvalidFieldError, match="Field form"):
        casework.build(
            Exchange().copies[REQUESTING].case,  # type: ignore[arg-type]
            action=Action.SUBMIT,
            party_agency=REQUESTING,
            seq=1,
            prev_digest=b"",
            at_ms=NOW,
            officer="o",
        )
    with pytest.raises(InvalidFieldError, match="acknowledge details, not refuse"):
        ex.build(REQUESTED, Action.ACKNOWLEDGE, details=details(Action.REFUSE))


# --- the chain ------------------------------------------------------------------------------


def test_a_wrong_prev_digest_conflicts() -> None:
    ex = acknowledged()
    first = ex.copies[REQUESTED].digests[0]
    at = ex.tick()
    for prev in (first, b"", bytes(32), hashlib.sha256(b"other history").digest()):
        body = raw_body(
            action=Action.ACCEPT,
            seq=3,
            prev_digest=prev,
            at=at,
            details=details(Action.ACCEPT),
        )
        opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
        expect(
            CaseConflictError,
            "ABORTED",
            lambda o=opened: check(ex.copies[REQUESTING], o),
            match="different history",
        )


def test_an_already_used_seq_conflicts() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    # The acknowledgement delivered again as a new envelope (new message id): step 2 is used.
    ack = ex.steps[-1].body
    opened = ex.send(REQUESTED, ack, MessageType.CASE_TRANSITION, ex.steps[-1].header.created_at)
    expect(CaseConflictError, "ABORTED", lambda: check(holder, opened))
    # Any step at or below the head conflicts, whatever its digest.
    at = ex.tick()
    for seq, prev in ((2, holder.digests[0]), (1, b""), (0, b"")):
        body = raw_body(
            action=Action.ACCEPT, seq=seq, prev_digest=prev, at=at, details=details(Action.ACCEPT)
        )
        opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
        expect(CaseConflictError, "ABORTED", lambda o=opened: check(holder, o))
    ex.refused_by(REQUESTING, opened)


def test_concurrent_steps_conflict_and_neither_history_forks() -> None:
    """Both parties act on step 2 at once; each copy keeps one history.

    The requested side's own REQUEST_INFO is applied first (its receipt came back); the
    requesting side's WITHDRAW, built on the same step 2, then conflicts there. (A node
    whose own step is still pending refuses the peer's step itself, before this check.)
    """
    ex = acknowledged()
    withdraw, _ = ex.build(REQUESTING, Action.WITHDRAW)
    ex.act(REQUESTED, Action.REQUEST_INFO)
    opened = deliver(
        REQUESTING,
        REQUESTED,
        withdraw,
        MessageType.CASE_TRANSITION,
        at=casework.parse_body(withdraw).at,
    )
    expect(CaseConflictError, "ABORTED", lambda: check(ex.copies[REQUESTED], opened))
    ex.assert_in_step()
    held = ex.copies[REQUESTED].case
    assert held is not None
    assert held.state is CaseState.MORE_INFO_REQUESTED
    # After looking again, the requesting side withdraws on top of step 3: accepted.
    ex.act(REQUESTING, Action.WITHDRAW)
    ex.assert_in_step()


def test_a_skipped_seq_is_not_yet_and_is_accepted_once_the_gap_fills() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    accept, accepted = ex.build(REQUESTED, Action.ACCEPT)
    # NG-NAPTIP applies its acceptance and builds the next step on it ...
    ex.copies[REQUESTED].apply(accepted)
    start, started = ex.build(REQUESTED, Action.START_EXECUTION)
    ex.copies[REQUESTED].apply(started)
    # ... but step 4 reaches GB-NCA before step 3.
    at4 = started.body.at
    early = ex.send(REQUESTED, start, MessageType.CASE_TRANSITION, at4)
    expect(
        CaseNotYetError,
        "UNAVAILABLE",
        lambda: check(holder, early),
        match="step 2 here; step 4 must wait",
    )
    ex.refused_by(REQUESTING, early)
    holder.apply(
        check(holder, ex.send(REQUESTED, accept, MessageType.CASE_TRANSITION, accepted.body.at))
    )
    # The retry of step 4 is now accepted.
    holder.apply(check(holder, ex.send(REQUESTED, start, MessageType.CASE_TRANSITION, at4)))
    ex.assert_in_step()
    assert holder.case is not None
    assert holder.case.state is CaseState.IN_EXECUTION


def test_statuses_of_chain_errors() -> None:
    assert CaseConflictError.status == "ABORTED"
    assert CaseNotYetError.status == "UNAVAILABLE"
    assert NotEntitledError.status == "PERMISSION_DENIED"


# --- the envelope around the body -----------------------------------------------------------


def test_a_submission_whose_case_ref_differs_from_its_header() -> None:
    ex = Exchange()
    body, sent = ex.build(REQUESTING, Action.SUBMIT)
    other = f"{REQUESTING}-2026-00002"
    opened = deliver(
        REQUESTING, REQUESTED, body, MessageType.MLA_REQUEST, at=sent.body.at, case_ref=other
    )
    expect(InvalidFieldError, "INVALID_ARGUMENT", lambda: check_submission(opened.header, body))
    with pytest.raises(InvalidFieldError, match="Field case_ref: the body names another case"):
        check_submission(opened.header, body)


def test_a_transition_whose_case_ref_differs_from_its_header() -> None:
    ex = acknowledged()
    body, sent = ex.build(REQUESTED, Action.ACCEPT)
    other = f"{REQUESTING}-2026-00002"
    opened = deliver(
        REQUESTED, REQUESTING, body, MessageType.CASE_TRANSITION, at=sent.body.at, case_ref=other
    )
    with pytest.raises(InvalidFieldError, match="Field case_ref: the body names another case"):
        check(ex.copies[REQUESTING], opened)


def test_a_transition_of_another_case_than_the_one_held() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    other = f"{REQUESTING}-2026-00002"
    at = ex.tick()
    body = raw_body(
        action=Action.ACCEPT,
        seq=3,
        prev_digest=holder.head,
        at=at,
        case_ref=other,
        details=details(Action.ACCEPT),
    )
    opened = deliver(
        REQUESTED, REQUESTING, body, MessageType.CASE_TRANSITION, at=at, case_ref=other
    )
    with pytest.raises(InvalidFieldError, match="Field case_ref: the transition names another"):
        check(holder, opened)


@pytest.mark.parametrize("skew", [1, -1, MINUTE, -HOUR])
def test_at_must_be_the_envelopes_created_at(skew: int) -> None:
    ex = Exchange()
    body, sent = ex.build(REQUESTING, Action.SUBMIT)
    opened = deliver(REQUESTING, REQUESTED, body, MessageType.MLA_REQUEST, at=sent.body.at + skew)
    with pytest.raises(InvalidFieldError, match="Field at:"):
        check_submission(opened.header, body)
    ex = acknowledged()
    body, sent = ex.build(REQUESTED, Action.ACCEPT)
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, sent.body.at + skew)
    with pytest.raises(InvalidFieldError, match="Field at:"):
        check(ex.copies[REQUESTING], opened)


def test_a_submission_from_an_agency_other_than_the_requesting_authority() -> None:
    ex = Exchange()
    ref = f"{OUTSIDER}-2026-00001"
    at = ex.tick()
    # FR-OCRTEH sends GB-NCA's request to NG-NAPTIP under a case reference of its own.
    body = raw_body(action=Action.SUBMIT, seq=1, prev_digest=b"", at=at, case_ref=ref, form=ex.form)
    opened = deliver(OUTSIDER, REQUESTED, body, MessageType.MLA_REQUEST, at=at, case_ref=ref)
    with pytest.raises(InvalidFieldError, match="requesting and requested authorities"):
        check_submission(opened.header, body)


def test_a_submission_to_another_recipient_than_the_requested_authority() -> None:
    ex = Exchange()
    body, sent = ex.build(REQUESTING, Action.SUBMIT)
    opened = deliver(REQUESTING, OUTSIDER, body, MessageType.MLA_REQUEST, at=sent.body.at)
    assert opened.header.recipient == OUTSIDER
    with pytest.raises(InvalidFieldError, match="requesting and requested authorities"):
        check_submission(opened.header, body)


@pytest.mark.parametrize(
    "case_ref",
    [f"{REQUESTED}-2026-00001", "GBNCA-2026-00001", "GB-NCA2026-00001", "GB-NC-2026-1", "x"],
)
def test_a_case_ref_not_prefixed_by_the_senders_agency_id(case_ref: str) -> None:
    ex = Exchange()
    at = ex.tick()
    body = raw_body(
        action=Action.SUBMIT, seq=1, prev_digest=b"", at=at, case_ref=case_ref, form=ex.form
    )
    opened = deliver(REQUESTING, REQUESTED, body, MessageType.MLA_REQUEST, at=at, case_ref=case_ref)
    with pytest.raises(InvalidFieldError, match="Field case_ref: a case reference of GB-NCA"):
        check_submission(opened.header, body)


@pytest.mark.parametrize(
    ("case_type", "message_type"),
    [
        (MLA, MessageType.EXTRADITION_REQUEST),
        (MLA, MessageType.VICTIM_ID_REQUEST),
        (MLA, MessageType.CASE_TRANSITION),
        (MLA, MessageType.NOTE),
        (EXTRADITION, MessageType.MLA_REQUEST),
        (EXTRADITION, MessageType.EVIDENCE),
    ],
)
def test_a_submission_under_the_wrong_message_type(
    case_type: forms.CaseType, message_type: MessageType
) -> None:
    ex = Exchange(case_type)
    body, sent = ex.build(REQUESTING, Action.SUBMIT)
    opened = deliver(REQUESTING, REQUESTED, body, message_type, at=sent.body.at)
    with pytest.raises(InvalidFieldError, match="Field message_type"):
        check_submission(opened.header, body)


@pytest.mark.parametrize(
    "message_type", [MessageType.MLA_REQUEST, MessageType.NOTE, MessageType.REPLY]
)
def test_a_later_transition_under_the_wrong_message_type(message_type: MessageType) -> None:
    ex = acknowledged()
    body, sent = ex.build(REQUESTED, Action.ACCEPT)
    opened = ex.send(REQUESTED, body, message_type, sent.body.at)
    with pytest.raises(InvalidFieldError, match="CASE_TRANSITION"):
        check(ex.copies[REQUESTING], opened)


def test_a_later_transition_carrying_a_form() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    at = ex.tick()
    body = raw_body(
        action=Action.ACCEPT,
        seq=3,
        prev_digest=holder.head,
        at=at,
        details=details(Action.ACCEPT),
        form=ex.form,
    )
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
    with pytest.raises(InvalidFieldError, match="only the submission carries the request form"):
        check(holder, opened)


# --- who may do what ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "action"),
    [
        (REQUESTING, Action.ACCEPT),  # only the requested party decides
        (REQUESTING, Action.REQUEST_INFO),
        (REQUESTING, Action.REFUSE),
        (REQUESTED, Action.WITHDRAW),  # only the requesting party withdraws
    ],
)
def test_a_transition_by_the_party_not_entitled(actor: str, action: Action) -> None:
    ex = acknowledged()
    entitled = ex.peer(actor)
    # Built as the entitled party would, then sent by the other one.
    body, sent = ex.build(entitled, action)
    receiver = ex.peer(actor)
    opened = deliver(actor, receiver, body, MessageType.CASE_TRANSITION, at=sent.body.at)
    expect(
        NotEntitledError,
        "PERMISSION_DENIED",
        lambda: check(ex.copies[receiver], opened),
        match=f"Only the {'requested' if entitled == REQUESTED else 'requesting'} party",
    )
    ex.refused_by(receiver, opened)


def test_a_transition_by_an_agency_not_party_to_the_case() -> None:
    ex = acknowledged()
    body, sent = ex.build(REQUESTED, Action.ACCEPT)
    opened = deliver(OUTSIDER, REQUESTING, body, MessageType.CASE_TRANSITION, at=sent.body.at)
    expect(
        NotEntitledError,
        "PERMISSION_DENIED",
        lambda: check(ex.copies[REQUESTING], opened),
        match="FR-OCRTEH is not a party",
    )


@pytest.mark.parametrize(
    ("action", "actor"),
    [
        (Action.ACCEPT, REQUESTED),  # needs an acknowledgement first
        (Action.START_EXECUTION, REQUESTED),
        (Action.REPORT_EXECUTED, REQUESTED),
        (Action.CLOSE, REQUESTING),  # nothing settled yet
        (Action.PROVIDE_INFO, REQUESTING),  # nothing was asked
        (Action.SUBMIT, REQUESTING),  # submitted already
    ],
)
def test_a_transition_illegal_in_the_case_state_conflicts(action: Action, actor: str) -> None:
    ex = submitted()
    receiver = ex.copies[ex.peer(actor)]
    at = ex.tick()
    body = raw_body(
        action=action,
        seq=2,
        prev_digest=receiver.head,
        at=at,
        details=None if action is Action.SUBMIT else details(action),
    )
    opened = ex.send(actor, body, MessageType.CASE_TRANSITION, at)
    expect(
        CaseConflictError,
        "ABORTED",
        lambda: check(receiver, opened),
        match="is submitted: .* is not allowed in that state",
    )
    ex.refused_by(ex.peer(actor), opened)


@pytest.mark.parametrize(
    ("refusal", "problem"),
    [
        (None, "Field details: a refuse transition carries refuse details, not none"),
        (fpb.TransitionDetails(), "Field details"),
        (
            fpb.TransitionDetails(refuse=fpb.Refusal(explanation="We do not want to.")),
            "Field grounds: a refusal must state at least one ground",
        ),
        (
            fpb.TransitionDetails(
                refuse=fpb.Refusal(grounds=[fpb.REFUSAL_GROUND_NO_DUAL_CRIMINALITY])
            ),
            "Field explanation",
        ),
        (
            fpb.TransitionDetails(
                refuse=fpb.Refusal(
                    grounds=[fpb.REFUSAL_GROUND_NO_DUAL_CRIMINALITY], explanation=" "
                )
            ),
            "Field explanation",
        ),
    ],
)
def test_a_refusal_without_grounds(refusal: fpb.TransitionDetails | None, problem: str) -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    at = ex.tick()
    body = raw_body(action=Action.REFUSE, seq=3, prev_digest=holder.head, at=at, details=refusal)
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
    expect(InvalidFieldError, "INVALID_ARGUMENT", lambda: check(holder, opened), match=problem)
    ex.refused_by(REQUESTING, opened)


def test_details_of_another_action_are_refused() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    at = ex.tick()
    body = raw_body(
        action=Action.ACCEPT, seq=3, prev_digest=holder.head, at=at, details=details(Action.CLOSE)
    )
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
    with pytest.raises(InvalidFieldError, match="accept details, not close"):
        check(holder, opened)


def test_a_transition_dated_before_the_previous_one() -> None:
    ex = acknowledged()
    holder = ex.copies[REQUESTING]
    at = ex.steps[-1].header.created_at - 1
    body = raw_body(
        action=Action.ACCEPT, seq=3, prev_digest=holder.head, at=at, details=details(Action.ACCEPT)
    )
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
    with pytest.raises(TransitionOrderError):
        check(holder, opened)


# --- the submission's own rules -------------------------------------------------------------


def _submission(ex: Exchange, **changes: Any) -> Opened:
    at = ex.tick()
    fields: dict[str, Any] = {
        "action": Action.SUBMIT,
        "seq": 1,
        "prev_digest": b"",
        "at": at,
        "form": ex.form,
    }
    fields.update(changes)
    body = raw_body(**fields)
    return deliver(REQUESTING, REQUESTED, body, MessageType.MLA_REQUEST, at=at)


@pytest.mark.parametrize(
    ("changes", "error", "problem"),
    [
        ({"action": Action.ACKNOWLEDGE, "form": None}, CaseConflictError, "is not known here"),
        ({"action": Action.PROVIDE_INFO}, CaseConflictError, "first step must be a submission"),
        ({"seq": 2}, InvalidFieldError, "Field seq"),
        ({"seq": 0}, InvalidFieldError, "Field seq"),
        ({"prev_digest": bytes(32)}, InvalidFieldError, "Field seq"),
        ({"form": None}, InvalidFieldError, "Field form: a submission carries its request form"),
        ({"form": fpb.CaseForm(mla=fpb.MlaRequest())}, InvalidFieldError, "Field "),
    ],
)
def test_submission_rules(changes: dict[str, Any], error: type[MlaxError], problem: str) -> None:
    ex = Exchange()
    opened = _submission(ex, **changes)
    with pytest.raises(error, match=problem):
        check_submission(opened.header, opened.body)


def test_a_submission_is_checked_structurally_not_against_the_clock() -> None:
    """Delivery can lag: a deadline that passed in transit does not make the request invalid."""
    ex = Exchange()
    ex.form.mla.requested_deadline = NOW + MINUTE
    opened = _submission(ex)
    with pytest.raises(InvalidFieldError, match="requested_deadline"):
        forms.validate_form(ex.form, now_ms=opened.header.created_at)
    assert check_submission(opened.header, opened.body).case.state is CaseState.SUBMITTED


def test_the_receiver_opens_the_case_from_the_submission() -> None:
    ex = Exchange(EXTRADITION)
    step = ex.act(REQUESTING, Action.SUBMIT)
    case = step.received.case
    assert (case.case_ref, case.requesting_agency, case.requested_agency) == (
        REF,
        REQUESTING,
        REQUESTED,
    )
    assert case.urgency is Urgency.URGENT
    assert case.opened_at == step.header.created_at
    assert step.header.message_type is MessageType.EXTRADITION_REQUEST


# --- malformed bodies -----------------------------------------------------------------------


def _through_both_checks(body: bytes, error: type[MlaxError]) -> None:
    ex = acknowledged()
    at = ex.tick()
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, at)
    with pytest.raises(error):
        check(ex.copies[REQUESTING], opened)
    with pytest.raises(error):
        check_submission(opened.header, body)


def test_garbage_and_unknown_fields_are_malformed() -> None:
    _through_both_checks(b"\xff\xff\xff", MalformedError)
    good = raw_body(action=Action.ACCEPT, seq=3, prev_digest=bytes(32), at=NOW)
    _through_both_checks(good + b"\xf8\x07\x01", MalformedError)  # field 127


def test_a_non_canonical_encoding_is_malformed() -> None:
    good = raw_body(action=Action.ACCEPT, seq=3, prev_digest=bytes(32), at=NOW)
    # The same fields with `seq` moved to the end: parses, but is not the signed encoding.
    seq_field = b"\x18\x03"
    assert seq_field in good
    reordered = good.replace(seq_field, b"", 1) + seq_field
    assert cpb.CaseTransitionBody.FromString(reordered) == cpb.CaseTransitionBody.FromString(good)
    _through_both_checks(reordered, MalformedError)
    # A default value written out explicitly (officer = "").
    _through_both_checks(good + b"\x32\x00", MalformedError)


def test_an_unknown_action_is_refused() -> None:
    body = cpb.CaseTransitionBody(case_ref=REF, action=99, seq=3, at=NOW)  # type: ignore[arg-type]
    _through_both_checks(body.SerializeToString(deterministic=True), InvalidFieldError)
    body = cpb.CaseTransitionBody(case_ref=REF, seq=3, at=NOW)
    _through_both_checks(body.SerializeToString(deterministic=True), InvalidFieldError)


def test_an_oversized_body_is_refused() -> None:
    big = raw_body(
        action=Action.ACCEPT, seq=3, prev_digest=bytes(32), at=NOW, officer="x" * (1 << 20)
    )
    with pytest.raises(OversizedError):
        casework.parse_body(big)


# --- digests and the approval message --------------------------------------------------------


def test_the_transition_digest_is_sha256_of_pae_of_context_and_body() -> None:
    ex = acknowledged()
    for step in ex.steps:
        data = step.body
        ctx = b"mlax/v1/case/transition"
        expected = hashlib.sha256(le64(2) + le64(len(ctx)) + ctx + le64(len(data)) + data)
        assert ctx == CTX_CASE_TRANSITION
        assert transition_digest(data) == expected.digest() == step.received.digest
    # One bit of the body changes the link.
    assert transition_digest(ex.steps[0].body + b"\x00") != transition_digest(ex.steps[0].body)


def test_the_form_digest_is_sha256_of_the_deterministic_form() -> None:
    form = example_form()
    assert form_digest(form) == hashlib.sha256(form.SerializeToString(deterministic=True)).digest()
    changed = example_form()
    changed.mla.summary_of_facts += " "
    assert form_digest(changed) != form_digest(form)


def test_the_approval_message_layout() -> None:
    digest = form_digest(example_form())
    at = NOW + 5 * MINUTE
    ctx, ref, sup = b"mlax/v1/case/approval", REF.encode(), b"sgt.okafor"
    expected = (
        le64(5)
        + le64(len(ctx))
        + ctx
        + le64(len(ref))
        + ref
        + le64(32)
        + digest
        + le64(len(sup))
        + sup
        + le64(8)
        + at.to_bytes(8, "big")
    )
    assert ctx == CTX_CASE_APPROVAL
    assert approval_message(REF, digest, "sgt.okafor", at) == expected
    # Every input is bound: changing any one changes the message.
    variants = {
        approval_message(REF, digest, "sgt.okafor", at),
        approval_message(REF + "0", digest, "sgt.okafor", at),
        approval_message(REF, bytes(32), "sgt.okafor", at),
        approval_message(REF, digest, "sgt.okafor2", at),
        approval_message(REF, digest, "sgt.okafor", at + 1),
        # No ambiguity between adjacent pieces.
        approval_message(REF[:-1], digest, "1sgt.okafor", at),
    }
    assert len(variants) == 6


def test_the_supervisor_signs_the_approval_with_ecdsa_p256() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    digest = form_digest(example_form())
    message = approval_message(REF, digest, "sgt.okafor", NOW)
    signature = key.sign(message, ec.ECDSA(hashes.SHA256()))
    key.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        key.public_key().verify(
            signature,
            approval_message(REF, digest, "sgt.okafor", NOW + 1),
            ec.ECDSA(hashes.SHA256()),
        )


def test_the_approval_travels_with_the_submission() -> None:
    ex = Exchange()
    approval = cpb.CaseApproval(
        supervisor="sgt.okafor", at=NOW - MINUTE, form_digest=form_digest(ex.form)
    )
    step = ex.act(REQUESTING, Action.SUBMIT, approval=approval)
    assert step.received.body.approval == approval


# --- bugs found (xfail until fixed in exchange/casework.py) -----------------------------------


@pytest.mark.parametrize(
    ("action", "kwargs"),
    [
        pytest.param(Action.ACKNOWLEDGE, {"details": None}, id="ack-without-details"),
        pytest.param(Action.ACCEPT, {"form": example_form()}, id="accept-with-form"),
    ],
)
def test_what_build_makes_the_peer_accepts(action: Action, kwargs: dict[str, Any]) -> None:
    """build() must refuse a body, or the peer must accept it: never build, send, refused."""
    ex = submitted() if action is Action.ACKNOWLEDGE else acknowledged()
    if action is Action.ACCEPT:
        kwargs = {**kwargs, "details": details(action)}
    try:
        body, sent = ex.build(REQUESTED, action, **kwargs)
    except InvalidFieldError:
        return  # refused by the sender already: consistent with the peer
    opened = ex.send(REQUESTED, body, MessageType.CASE_TRANSITION, sent.body.at)
    check(ex.copies[REQUESTING], opened)


def test_a_submission_carrying_details_is_refused() -> None:
    ex = Exchange()
    opened = _submission(ex, details=details(Action.ACCEPT))
    with pytest.raises(InvalidFieldError):
        check_submission(opened.header, opened.body)


def test_an_approval_of_another_form_is_refused() -> None:
    ex = Exchange()
    approval = cpb.CaseApproval(supervisor="sgt.okafor", at=NOW, form_digest=bytes(32))
    opened = _submission(ex, approval=approval)
    with pytest.raises(InvalidFieldError):
        check_submission(opened.header, opened.body)


def test_a_case_ref_in_another_agencys_namespace_is_refused() -> None:
    ex = Exchange()
    squatted = "GB-NCA-SOUTH-2026-00001"
    at = ex.tick()
    body = raw_body(
        action=Action.SUBMIT, seq=1, prev_digest=b"", at=at, case_ref=squatted, form=ex.form
    )
    opened = deliver(REQUESTING, REQUESTED, body, MessageType.MLA_REQUEST, at=at, case_ref=squatted)
    with pytest.raises(InvalidFieldError):
        check_submission(opened.header, body)


# --- the published vector (docs/vectors/case_transition.json) --------------------------------


@cache
def vector() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / "case_transition.json").read_text("utf-8"))
    return doc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def vector_header(sender: str, message_type: str, at: int) -> Header:
    doc = vector()
    return Header(
        message_id=uuid7(at),
        sender=sender,
        recipient=doc["requested"] if sender == doc["requesting"] else doc["requesting"],
        message_type=MessageType(epb.MessageType.Value(message_type)),
        created_at=at,
        expires_at=at + 30 * DAY,
        sender_key_id=key_id("ed25519", bytes(32)),
        recipient_key_id=key_id("x25519", bytes(32)),
        suite=Suite.X25519_SHA256_CHACHA20POLY1305,
        case_ref=doc["case_ref"],
    )


def test_vector_contexts_and_form() -> None:
    doc = vector()
    assert doc["contexts"] == {
        "transition": CTX_CASE_TRANSITION.decode(),
        "approval": CTX_CASE_APPROVAL.decode(),
    }
    form = forms.form_from_bytes(h(doc["form"]))
    assert form.SerializeToString(deterministic=True) == h(doc["form"])
    assert form_digest(form).hex() == doc["form_digest"]
    assert forms.parties_of(form) == (doc["requesting"], doc["requested"])


def test_vector_approval() -> None:
    doc = vector()
    a = doc["approval"]
    message = approval_message(a["case_ref"], h(a["form_digest"]), a["supervisor"], a["at"])
    assert message.hex() == a["message"]
    assert message.endswith(le64(8) + h(a["at_bytes"]))
    assert a["at"].to_bytes(8, "big").hex() == a["at_bytes"]
    key = ec.derive_private_key(int.from_bytes(h(a["supervisor_private_scalar"])), ec.SECP256R1())
    public = key.public_key()
    assert (
        public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ).hex()
        == a["supervisor_public_key"]
    )
    public.verify(h(a["signature_rfc6979_der"]), message, ec.ECDSA(hashes.SHA256()))
    # RFC 6979: the same key and message give the same signature.
    again = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    assert again.hex() == a["signature_rfc6979_der"]


def test_vector_chain() -> None:
    doc = vector()
    holder: Copy = Copy("vector")
    prev = b""
    for t in doc["transitions"]:
        data = h(t["body"])
        body = casework.parse_body(data)
        f = t["fields"]
        assert (body.case_ref, cpb.CaseAction.Name(body.action), body.seq) == (
            f["case_ref"],
            f["action"],
            f["seq"],
        )
        assert (body.prev_digest.hex(), body.at, body.officer) == (
            f["prev_digest"],
            f["at"],
            f["officer"],
        )
        assert body.prev_digest == prev
        assert h(t["digest_input_prefix"]) + data == pae(CTX_CASE_TRANSITION, data)
        assert transition_digest(data).hex() == t["digest"]
        header = vector_header(t["sender"], t["message_type"], f["at"])
        applied = check_raw(holder, header, data)
        holder.apply(applied)
        assert applied.case.state.value == t["state_after"]
        if body.HasField("form"):
            assert body.form.SerializeToString(deterministic=True) == h(doc["form"])
            assert body.approval.form_digest.hex() == doc["form_digest"]
        prev = applied.digest


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in vector()["negative"]])
def test_vector_refusals(case: dict[str, Any]) -> None:
    doc = vector()
    holder = Copy("vector")
    for t in doc["transitions"][: case["holder_seq"]]:
        header = vector_header(t["sender"], t["message_type"], t["fields"]["at"])
        holder.apply(check_raw(holder, header, h(t["body"])))
    assert holder.head.hex() == case["holder_head_digest"]
    header = vector_header(case["sender"], "MESSAGE_TYPE_CASE_TRANSITION", case["at"])
    cls = {
        "CaseConflictError": CaseConflictError,
        "CaseNotYetError": CaseNotYetError,
        "NotEntitledError": NotEntitledError,
    }[case["error"]]
    expect(cls, case["status"], lambda: check_raw(holder, header, h(case["body"])))


# --- docs/protocol-casework.md quotes the vectors --------------------------------------------

HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{32,}(?![0-9A-Za-z])")


def test_the_casework_protocol_doc_quotes_only_vector_bytes() -> None:
    text = DOC.read_text(encoding="utf-8")
    vectors = "\n".join(
        (VECTORS / n).read_text("utf-8") for n in ("attachment.json", "case_transition.json")
    )
    quoted = HEX_RUN.findall(text)
    assert len(quoted) >= 6
    for value in quoted:
        assert value in vectors, f"docs/protocol-casework.md quotes {value[:24]}…, not in a vector"
    for context in (CTX_CASE_TRANSITION, CTX_CASE_APPROVAL, b"mlax/v1/attachment/chunk"):
        assert f"`{context.decode()}`" in text
