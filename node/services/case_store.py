"""Reading a case as this node stores it: rows, applied steps, queued steps, local head.

Shared by the case desk (reading, drafting, clocks) and the case steps (acting, the
peer's steps, delivery outcomes). Plain functions over a session: no I/O beyond it.
"""

from __future__ import annotations

import dataclasses

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import policy
from exchange.case import (
    Action,
    Case,
    CaseState,
    Party,
    Transition,
    Urgency,
)
from exchange.encoding import now_ms
from exchange.envelope import (
    MessageType,
    codes_of,
)
from exchange.errors import ConflictError, PolicyError, Status
from node.services.messages import (
    NotFoundError,
    Officer,
    PermissionDeniedError,
)
from node.storage import ledger
from node.storage.db import Database
from node.storage.models import CaseEventRow, CasePendingRow, CaseRow

SUBMISSION_TYPES = (
    MessageType.MLA_REQUEST,
    MessageType.EXTRADITION_REQUEST,
    MessageType.VICTIM_ID_REQUEST,
)
CASE_MESSAGE_TYPES = frozenset(
    {*(t.value for t in SUBMISSION_TYPES), MessageType.CASE_TRANSITION.value}
)
# How far a supervisor's signed approval time may be from the node's clock.
_APPROVAL_SKEW_MS = 5 * 60 * 1000


class CaseStaleError(ConflictError):
    """An action taken on an older view of the case than the node holds."""

    status = Status.FAILED_PRECONDITION


class CaseBusyError(ConflictError):
    """An action while this node's previous transition is still on its way to the peer."""

    status = Status.FAILED_PRECONDITION


class _CaseMovedError(Exception):
    """The case moved between building a step and storing it: build it again."""


class ApprovalError(PolicyError):
    """An approval that four-eyes does not accept."""

    status = Status.PERMISSION_DENIED


def check_approval(
    officer_name: str,
    drafted_by: str | None,
    what: str,
    *,
    at: int,
    message: bytes,
    signature: bytes,
    cert_pem: bytes,
) -> None:
    """The four-eyes rule for whatever a supervisor approves (a case's submission, a
    statistics release): not the drafter, signed now (within `_APPROVAL_SKEW_MS`), and the
    signature over `message` verifies under the approver's credential key. `what` names
    the item in the refusal ("case GB-2026-0001", "release 1f0c..."). The role itself is
    the RPC policy's (`node.rpc.auth.allow`), and each caller checks the digest it shows."""
    if drafted_by == officer_name:
        raise ApprovalError(f"Four-eyes: {officer_name} drafted {what} and cannot approve it.")
    if abs(at - now_ms()) > _APPROVAL_SKEW_MS:
        raise ApprovalError("The approval's time is more than 5 minutes from the node's.")
    try:
        key = x509.load_pem_x509_certificate(cert_pem).public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise ApprovalError(
            "The approval signature does not verify under your credential's key."
        ) from None


def names(text: str) -> tuple[str, ...]:
    return tuple(n for n in text.split("\n") if n)


def case_handling(row: CaseRow) -> policy.Handling:
    """Who may read a case's content on this node. Its named officers are officers of the
    requested agency (the submission's recipient); on the requesting node also the
    officer who created it."""
    return policy.Handling.of(
        codes_of(row.handling_codes),
        names(row.restricted_to),
        recipient=row.requested,
        author=policy.OfficerId(row.requesting, row.created_by) if row.created_by else None,
    )


def check_may_act(db: Database, agency: str, officer: Officer, row: CaseRow, action: str) -> None:
    """Refuse `officer` acting on the case `row` (`action`: a step's name, or
    "add_evidence") unless it may read it (`policy.may_act`); a refusal is ledgered as
    `case.action_refused` and changes nothing else."""
    who = policy.OfficerId(agency, officer.name)
    decision = policy.may_act(who, officer.role, case_handling(row))
    if decision.reason is None:
        return
    with db.write() as s:
        ledger.refusal(
            s,
            "case.action_refused",
            who,
            decision.reason.value,
            case_ref=row.case_ref,
            action=action,
        )
    raise PermissionDeniedError(decision.explain(f"Case {row.case_ref}"))


def domain(row: CaseRow, events: list[CaseEventRow]) -> Case:
    """The exchange.case view of a stored case."""
    return Case(
        case_ref=row.case_ref,
        requesting_agency=row.requesting,
        requested_agency=row.requested,
        urgency=Urgency(row.urgency),
        opened_at=row.opened_at,
        state=CaseState(row.state),
        history=tuple(
            Transition(row.case_ref, Action(e.action), Party(e.party), e.at) for e in events
        ),
    )


def row_of(s: Session, case_ref: str, lock: bool = False) -> CaseRow:
    q = select(CaseRow).where(CaseRow.case_ref == case_ref)
    if lock:
        q = q.with_for_update()
    row = s.scalars(q).first()
    if row is None:
        raise NotFoundError(f"No case {case_ref[:128]} on this node.")
    return row


def events_of(s: Session, row: CaseRow) -> list[CaseEventRow]:
    return list(
        s.scalars(
            select(CaseEventRow).where(CaseEventRow.case_id == row.id).order_by(CaseEventRow.seq)
        ).all()
    )


def pending_of(s: Session, row: CaseRow) -> list[CasePendingRow]:
    """This node's steps of the case not yet receipted, in order (first is in flight)."""
    return list(
        s.scalars(
            select(CasePendingRow)
            .where(CasePendingRow.case_id == row.id)
            .order_by(CasePendingRow.seq)
        ).all()
    )


def local_of(
    s: Session, row: CaseRow, applied: Case | None = None
) -> tuple[Case, int, bytes, list[CasePendingRow]]:
    """The case as it stands once this node's queued steps take effect.

    Returns that case, its step number and head digest, and the queued steps. `applied`
    is the case as applied here, when the caller has already read it.
    """
    case = applied if applied is not None else domain(row, events_of(s, row))
    seq, head = row.seq, row.head_digest
    pending = pending_of(s, row)
    for p in pending:
        # Checked by the machine when it was built; its details stay sealed.
        step = Transition(row.case_ref, Action(p.action), Party(row.role), p.at)
        case = dataclasses.replace(
            case, state=CaseState(p.state_after), history=(*case.history, step)
        )
        seq, head = p.seq, p.digest
    return case, seq, head, pending
