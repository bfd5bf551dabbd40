"""Casework on a node: drafts, four-eyes approval, signed transitions, legal clocks.

Both parties' nodes hold the same case: each transition is an envelope from the party
entitled to make it, checked by `exchange.casework` on arrival and applied in the
transaction that stores it. The sender applies its own transition only when the peer's
receipt arrives (until then it is *pending*). An officer's consecutive steps queue
behind the pending one, each chained to the digest of the one before, and leave one at a
time, in order. When both parties' steps cross, the requesting agency's step stands and
the requested agency's queued steps are dropped on both nodes (docs/protocol-casework.md,
"Steps in flight"; ADR 0008), so neither history forks.

Content stays sealed at rest: the form is kept sealed to the node's own key, and each
transition's details live in its envelope; reading them is a ledgered access.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange import casework, forms, policy
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import (
    TERMINAL_STATES,
    Action,
    Case,
    CaseState,
    ClockLimits,
    ClockPolicy,
    Party,
    Transition,
    Urgency,
    allowed_actions,
    deadlines,
    overdue,
)
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import (
    Envelope,
    Header,
    MessageType,
    Opened,
    codes_of,
    codes_text,
    handling_from_wire,
)
from exchange.errors import InvalidFieldError, MlaxError
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.config import CasesSection
from node.services.messages import (
    FAILED,
    HELD,
    IN,
    QUEUED,
    NodeCore,
    NotFoundError,
    Officer,
    PermissionDeniedError,
    message_handling,
)
from node.storage import ledger
from node.storage.models import CaseEventRow, CasePendingRow, CaseRow, MessageRow
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.cases")

SUBMISSION_TYPES = (
    MessageType.MLA_REQUEST,
    MessageType.EXTRADITION_REQUEST,
    MessageType.VICTIM_ID_REQUEST,
)
CASE_MESSAGE_TYPES = frozenset(
    {*(t.value for t in SUBMISSION_TYPES), MessageType.CASE_TRANSITION.value}
)
# Clocks raised at most once per case; a case leaves these states only by an act.
_APPROVAL_SKEW_MS = 5 * 60 * 1000


class CaseStaleError(MlaxError):
    """An action taken on an older view of the case than the node holds."""

    status = "FAILED_PRECONDITION"


class CaseBusyError(MlaxError):
    """An action while this node's previous transition is still on its way to the peer."""

    status = "FAILED_PRECONDITION"


class _CaseMovedError(Exception):
    """The case moved between building a step and storing it: build it again."""


class ApprovalError(MlaxError):
    """An approval that four-eyes does not accept."""

    status = "PERMISSION_DENIED"


def policy_of(cfg: CasesSection) -> ClockPolicy:
    def lim(ack: float, response: float) -> ClockLimits:
        return ClockLimits(ack_ms=int(ack * 1000), response_ms=int(response * 1000))

    return ClockPolicy(
        emergency=lim(cfg.emergency_ack_seconds, cfg.emergency_response_seconds),
        urgent=lim(cfg.urgent_ack_seconds, cfg.urgent_response_seconds),
        ordinary=lim(cfg.ordinary_ack_seconds, cfg.ordinary_response_seconds),
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(n for n in text.split("\n") if n)


def case_handling(row: CaseRow) -> policy.Handling:
    """Who may read a case's content on this node. Its named officers are officers of the
    requested agency (the submission's recipient); on the requesting node also the
    officer who created it."""
    return policy.Handling.of(
        codes_of(row.handling_codes),
        _names(row.restricted_to),
        recipient=row.requested,
        author=policy.OfficerId(row.requesting, row.created_by) if row.created_by else None,
    )


def _domain(row: CaseRow, events: list[CaseEventRow]) -> Case:
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


class CaseDesk:
    """Case operations over the node's database and identity."""

    def __init__(self, core: NodeCore, cfg: CasesSection) -> None:
        self.core = core
        self.cfg = cfg
        self.policy = policy_of(cfg)
        self.agency = core.agency
        for t in SUBMISSION_TYPES:
            core.receive_hooks[t] = self._on_submission
        core.receive_hooks[MessageType.CASE_TRANSITION] = self._on_transition
        core.outcome_hooks.append(self._on_outcome)
        # A case step is never given up while its fate at the peer is unknown: delivery
        # keeps asking until the peer answers with its receipt or a refusal.
        core.settle_types.update(CASE_MESSAGE_TYPES)

    # -- reading --------------------------------------------------------------------------

    def _row(self, s: Session, case_ref: str, lock: bool = False) -> CaseRow:
        q = select(CaseRow).where(CaseRow.case_ref == case_ref)
        if lock:
            q = q.with_for_update()
        row = s.scalars(q).first()
        if row is None:
            raise NotFoundError(f"No case {case_ref[:128]} on this node.")
        return row

    @staticmethod
    def _events(s: Session, row: CaseRow) -> list[CaseEventRow]:
        return list(
            s.scalars(
                select(CaseEventRow)
                .where(CaseEventRow.case_id == row.id)
                .order_by(CaseEventRow.seq)
            ).all()
        )

    @staticmethod
    def _pending(s: Session, row: CaseRow) -> list[CasePendingRow]:
        """This node's steps of the case not yet receipted, in order (first is in flight)."""
        return list(
            s.scalars(
                select(CasePendingRow)
                .where(CasePendingRow.case_id == row.id)
                .order_by(CasePendingRow.seq)
            ).all()
        )

    def _local(self, s: Session, row: CaseRow) -> tuple[Case, int, bytes, list[CasePendingRow]]:
        """The case as it stands once this node's queued steps take effect.

        Returns that case, its step number and head digest, and the queued steps.
        """
        case = _domain(row, self._events(s, row))
        seq, head = row.seq, row.head_digest
        pending = self._pending(s, row)
        for p in pending:
            # Checked by the machine when it was built; its details stay sealed.
            step = Transition(row.case_ref, Action(p.action), Party(row.role), p.at)
            case = dataclasses.replace(
                case, state=CaseState(p.state_after), history=(*case.history, step)
            )
            seq, head = p.seq, p.digest
        return case, seq, head, pending

    def handling(self, s: Session, case_ref: str) -> policy.Handling:
        """Who may read the case here (`case_handling`): its evidence is at least as
        restricted (`policy.evidence_handling`)."""
        return case_handling(self._row(s, case_ref))

    def counterpart(self, s: Session, case_ref: str) -> str:
        """The other party of a live case (evidence goes there); raises if it takes none."""
        row = self._row(s, case_ref)
        if row.state in (CaseState.DRAFT.value, CaseState.CLOSED.value):
            raise CaseStaleError(
                f"Case {case_ref} is {row.state}: evidence travels only on a submitted, open case."
            )
        return row.peer

    def summary(self, s: Session, row: CaseRow, now: int | None = None) -> cpb.CaseSummary:
        now = now_ms() if now is None else now
        case = _domain(row, self._events(s, row))
        due = deadlines(case, self.policy)
        pending = ""
        pending_error = ""
        if row.pending_message_id:
            msg = s.scalars(
                select(MessageRow).where(
                    MessageRow.message_id == row.pending_message_id, MessageRow.direction == "out"
                )
            ).first()
            if msg is not None:
                pending, pending_error = msg.state, msg.last_error
        role = Party(row.role)
        local, local_seq, _, queued = self._local(s, row)
        actions = (
            [] if row.awaiting_approval else [a.value for a in allowed_actions(local.state, role)]
        )
        return cpb.CaseSummary(
            case_ref=row.case_ref,
            case_type=row.case_type,
            role=row.role,
            peer=row.peer,
            state=row.state,
            urgency=row.urgency,
            seq=row.seq,
            opened_at=row.opened_at,
            updated_at=row.updated_at,
            pending_action=row.pending_action,
            pending_delivery=pending,
            pending_error=pending_error,
            awaiting_approval=row.awaiting_approval,
            created_by=row.created_by or "",
            approved_by=row.approved_by,
            ack_due=due.ack_due or 0,
            response_due=due.response_due or 0,
            overdue=overdue(case, self.policy, now),
            requested_deadline=row.requested_deadline,
            allowed_actions=actions,
            form_digest=row.form_digest,
            head_digest=row.head_digest,
            handling_codes=[c.value for c in codes_of(row.handling_codes)],
            restricted_to=list(_names(row.restricted_to)),
            last_error=row.last_error,
            queued_actions=[p.action for p in queued],
            local_seq=local_seq,
            local_state=local.state.value,
        )

    def list_cases(self, req: cpb.ListCasesRequest) -> cpb.ListCasesResponse:
        q = select(CaseRow).order_by(CaseRow.updated_at.desc()).limit(min(req.limit or 100, 1000))
        if req.states:
            q = q.where(CaseRow.state.in_(list(req.states)))
        if req.peer:
            q = q.where(CaseRow.peer == req.peer)
        if req.case_type:
            q = q.where(CaseRow.case_type == req.case_type)
        if req.awaiting_approval:
            q = q.where(CaseRow.awaiting_approval.is_(True))
        if req.open_only:
            q = q.where(CaseRow.state != CaseState.CLOSED.value)
        now = now_ms()
        with self.core.db.read() as s:
            out = [self.summary(s, r, now) for r in s.scalars(q).all()]
        if req.overdue_only:
            out = [c for c in out if c.overdue]
        return cpb.ListCasesResponse(cases=out)

    def view(
        self,
        officer: Officer,
        case_ref: str,
        include_content: bool = False,
        attachments: Callable[[Session, str], list[apb.AttachmentInfo]] | None = None,
    ) -> cpb.CaseView:
        with self.core.db.read() as s:
            row = self._row(s, case_ref)
            view = cpb.CaseView(summary=self.summary(s, row))
            events = self._events(s, row)
            messages = {
                m.message_id: m
                for m in s.scalars(
                    select(MessageRow).where(
                        MessageRow.message_id.in_([e.message_id for e in events if e.message_id])
                    )
                ).all()
            }
            if attachments is not None:
                view.attachments.extend(attachments(s, case_ref))
            form_sealed = row.form_sealed
            handling = case_handling(row)
        for e in events:
            view.timeline.append(
                cpb.CaseEvent(
                    seq=e.seq,
                    action=e.action,
                    party=e.party,
                    agency=e.agency,
                    at=e.at,
                    officer=e.officer,
                    message_id=format_uuid(e.message_id) if e.message_id else "",
                    digest=e.digest,
                    state_after=e.state_after,
                )
            )
        if not include_content:
            return view
        decision = policy.may_read(
            policy.OfficerId(self.agency, officer.name), officer.role, handling
        )
        if not decision.allowed:
            self._ledger_refusal(case_ref, officer, decision)
        view.form.CopyFrom(fpb.CaseForm.FromString(self.core.open_from_self(form_sealed)))
        for event, e in zip(view.timeline, events, strict=True):
            msg = messages.get(e.message_id)
            if msg is None:
                continue
            body = casework.parse_body(self.core.open_from_self(msg.self_copy or msg.envelope))
            if body.HasField("details"):
                event.details.CopyFrom(body.details)
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "case.read",
                    now_ms(),
                    case_ref=case_ref,
                    officer=officer.name,
                    role=officer.role,
                ),
            )
        return view

    def _ledger_refusal(
        self, case_ref: str, officer: Officer, decision: policy.Decision
    ) -> NoReturn:
        assert decision.reason is not None
        with self.core.db.write() as s:
            ledger.refusal(
                s,
                "case.read_refused",
                policy.OfficerId(self.agency, officer.name),
                decision.reason.value,
                case_ref=case_ref,
            )
        raise PermissionDeniedError(decision.explain(f"Case {case_ref}"))

    # -- drafting -------------------------------------------------------------------------

    def create(self, officer: Officer, req: cpb.CreateCaseRequest) -> str:
        now = now_ms()
        forms.validate_form(req.form, now_ms=now)
        case_type = casework.CASE_TYPE_NAMES[forms.case_type_of(req.form)]
        requesting, requested = forms.parties_of(req.form)
        if requesting != self.agency:
            raise InvalidFieldError(
                f"Field requesting_authority: this node's agency is {self.agency}, not "
                f"{requesting}."
            )
        recipient = req.recipient or requested
        if recipient != requested:
            raise InvalidFieldError(
                f"Field requested_authority: the form names {requested}, the request is "
                f"addressed to {recipient}."
            )
        if recipient == self.agency or self.core.directory.current().agency(recipient) is None:
            raise InvalidFieldError(
                f"Field requested_authority: {recipient} is not another member of the federation."
            )
        codes = handling_from_wire(req.handling_codes, req.restricted_to, "a case")
        if len(req.idempotency_key) > 128:
            raise InvalidFieldError("Field idempotency_key: at most 128 characters.")
        if req.idempotency_key:
            with self.core.db.read() as s:
                prior = s.scalars(
                    select(CaseRow).where(
                        CaseRow.created_by == officer.name,
                        CaseRow.idempotency_key == req.idempotency_key,
                    )
                ).first()
                if prior is not None:
                    return prior.case_ref
        form_bytes = req.form.SerializeToString(deterministic=True)
        sealed = self.core.seal_to_self(form_bytes)
        urgency = forms.urgency_of(req.form).value
        deadline = forms.deadline_of(req.form) or 0
        year = datetime.fromtimestamp(now / 1000, UTC).year
        for _ in range(5):
            try:
                with self.core.db.write() as s:
                    prefix = f"{self.agency}-{year}-"
                    count = (
                        s.scalar(
                            select(func.count())
                            .select_from(CaseRow)
                            .where(CaseRow.case_ref.like(f"{prefix}%"))
                        )
                        or 0
                    )
                    case_ref = f"{prefix}{count + 1:05d}"
                    s.add(
                        CaseRow(
                            case_ref=case_ref,
                            case_type=case_type,
                            role=Party.REQUESTING.value,
                            requesting=self.agency,
                            requested=recipient,
                            peer=recipient,
                            urgency=urgency,
                            state=CaseState.DRAFT.value,
                            seq=0,
                            head_digest=b"",
                            opened_at=now,
                            updated_at=now,
                            requested_deadline=deadline,
                            handling_codes=codes_text(codes),
                            restricted_to="\n".join(req.restricted_to),
                            form_sealed=sealed,
                            form_digest=casework.form_digest(req.form),
                            created_by=officer.name,
                            idempotency_key=req.idempotency_key or None,
                        )
                    )
                    ledger.append(
                        s,
                        LedgerEntry.of(
                            "case.created",
                            now,
                            case_ref=case_ref,
                            case_type=case_type,
                            requested=recipient,
                            officer=officer.name,
                            form_digest=casework.form_digest(req.form).hex(),
                        ),
                    )
                return case_ref
            except IntegrityError:
                continue  # another replica took that number; count again
        raise CaseBusyError("Could not allocate a case reference; try again.")

    # -- acting ---------------------------------------------------------------------------

    def act(self, officer: Officer, req: cpb.CaseActionRequest) -> str:
        action = casework.action_of(req.action)
        with self.core.db.read() as s:
            row = self._row(s, req.case_ref)
            pending = self._pending(s, row)
            self._check_fresh(row, req.expected_seq, pending[-1].seq if pending else row.seq)
            if action is Action.SUBMIT:
                if (
                    row.state != CaseState.DRAFT.value
                    or pending
                    or row.role != Party.REQUESTING.value
                ):
                    raise CaseStaleError(f"Case {row.case_ref} is {row.state}: it was submitted.")
                if row.awaiting_approval:
                    raise CaseBusyError(
                        f"Case {row.case_ref} is waiting for a supervisor's approval."
                    )
                if row.case_type in self.cfg.approval_types and not row.approved_by:
                    return self._ask_approval(officer, row.case_ref)
                return self._send(officer, row.case_ref, Action.SUBMIT, None)
            local_draft = row.seq == 0 and not pending
        # A draft that never left: withdrawing it (also from the supervisor's queue) or
        # closing it concerns this node only. If its submission left meanwhile (a
        # supervisor approved it), the action queues behind the submission instead.
        if local_draft and self._act_locally(officer, req.case_ref, action):
            return req.case_ref
        return self._send(officer, req.case_ref, action, req.details, expected=req.expected_seq)

    @staticmethod
    def _check_fresh(row: CaseRow, expected_seq: int, local_seq: int) -> None:
        """Refuse an action taken on an older view of the case than this node holds.

        `expected_seq` is the step the officer looked at, counting this node's queued
        steps (`CaseSummary.local_seq`); 0 skips the check.
        """
        if expected_seq and expected_seq != local_seq:
            raise CaseStaleError(
                f"Case {row.case_ref} moved on to step {local_seq} since you looked at step "
                f"{expected_seq}; look at it again."
            )

    def _ask_approval(self, officer: Officer, case_ref: str) -> str:
        now = now_ms()
        with self.core.db.write() as s:
            row = self._row(s, case_ref, lock=True)
            if row.awaiting_approval or row.seq or self._pending(s, row):
                raise CaseStaleError(f"Case {case_ref} changed meanwhile; look at it again.")
            row.awaiting_approval, row.updated_at, row.last_error = True, now, ""
            ledger.append(
                s,
                LedgerEntry.of(
                    "case.approval_requested",
                    now,
                    case_ref=case_ref,
                    officer=officer.name,
                    form_digest=row.form_digest.hex(),
                ),
            )
        log.info("case_awaiting_approval", case_ref=case_ref)
        return case_ref

    def _act_locally(self, officer: Officer, case_ref: str, action: Action) -> bool:
        """Withdraw or close a draft that never left this node: nothing to tell the peer.

        Returns False, changing nothing, if the draft's submission has left meanwhile.
        """
        now = now_ms()
        with self.core.db.write() as s:
            row = self._row(s, case_ref, lock=True)
            if row.seq != 0 or self._pending(s, row):
                return False
            case = _domain(row, [])
            after = case.apply(
                Transition(case_ref, action, Party(row.role), max(now, row.updated_at))
            )
            row.state, row.updated_at, row.awaiting_approval = after.state.value, now, False
            ledger.append(
                s,
                LedgerEntry.of(
                    "case.draft_" + action.value, now, case_ref=case_ref, officer=officer.name
                ),
            )
        return True

    def approve(self, officer: Officer, req: cpb.ApproveCaseRequest, cert_pem: bytes) -> str:
        now = now_ms()
        with self.core.db.read() as s:
            row = self._row(s, req.case_ref)
            if not row.awaiting_approval:
                raise CaseStaleError(f"Case {row.case_ref} is not waiting for approval.")
            if row.created_by == officer.name:
                raise ApprovalError(
                    f"Four-eyes: {officer.name} drafted case {row.case_ref} and cannot approve it."
                )
            if bytes(req.form_digest) != row.form_digest:
                raise CaseStaleError(
                    f"The draft of case {row.case_ref} differs from the one you approved."
                )
        if abs(req.at - now) > _APPROVAL_SKEW_MS:
            raise ApprovalError("The approval's time is more than 5 minutes from the node's.")
        message = casework.approval_message(req.case_ref, row.form_digest, officer.name, req.at)
        try:
            key = x509.load_pem_x509_certificate(cert_pem).public_key()
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise InvalidSignature
            key.verify(bytes(req.signature), message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise ApprovalError(
                "The approval signature does not verify under your credential's key."
            ) from None
        approval = cpb.CaseApproval(supervisor=officer.name, at=req.at, form_digest=row.form_digest)
        return self._send(
            officer, req.case_ref, Action.SUBMIT, None, approval=(approval, bytes(req.signature))
        )

    def _send(
        self,
        officer: Officer,
        case_ref: str,
        action: Action,
        details: fpb.TransitionDetails | None,
        approval: tuple[cpb.CaseApproval, bytes] | None = None,
        expected: int = 0,
    ) -> str:
        """Build this node's next step of the case, chained to its newest queued step.

        The step leaves at once if nothing of this case is on its way to the peer, else it
        waits (HELD) behind the step before it. If the case moved between reading it and
        storing the step (a peer's step arrived, another officer acted), the step is built
        again on the new head, unless the officer pinned the step they looked at.
        """
        for _ in range(3):
            try:
                return self._send_once(officer, case_ref, action, details, approval, expected)
            except _CaseMovedError:
                continue
        raise CaseStaleError(f"Case {case_ref} keeps changing; look at it again.")

    def _send_once(
        self,
        officer: Officer,
        case_ref: str,
        action: Action,
        details: fpb.TransitionDetails | None,
        approval: tuple[cpb.CaseApproval, bytes] | None,
        expected: int,
    ) -> str:
        with self.core.db.read() as s:
            row = self._row(s, case_ref)
            case, seq, head, pending = self._local(s, row)
            self._check_fresh(row, expected, seq)
            if approval is not None and (pending or not row.awaiting_approval):
                raise CaseStaleError(f"Case {case_ref} is not waiting for approval.")
            form = (
                fpb.CaseForm.FromString(self.core.open_from_self(row.form_sealed))
                if action is Action.SUBMIT
                else None
            )
            peer = row.peer
            # Only the peer's own named officers travel (protocol.md 4.2).
            codes, named = case_handling(row).wire(peer)
        now = max(now_ms(), case.history[-1].at_ms if case.history else 0)
        if action is not Action.SUBMIT and (
            details is None or details.WhichOneof("details") is None
        ):
            # No details given: the action's own (empty) kind, or the error naming what
            # it needs (a refusal's grounds, say).
            details = forms.details_from_mapping(action, {})
        body, applied = casework.build(
            case,
            action=action,
            party_agency=self.agency,
            seq=seq + 1,
            prev_digest=head,
            at_ms=now,
            officer=officer.name,
            details=details,
            form=form,
            approval=approval[0] if approval else None,
        )
        message_type = (
            MessageType(forms.message_type_of(forms.case_type_of(form)))
            if form is not None
            else MessageType.CASE_TRANSITION
        )
        msg, entry = self.core.outbound(
            officer.name,
            peer,
            body,
            message_type,
            case_ref=case_ref,
            handling_codes=codes,
            restricted_to=named,
            now=now,
        )
        with self.core.db.write() as s:
            row = self._row(s, case_ref, lock=True)
            queued = self._pending(s, row)
            tip = (queued[-1].seq, queued[-1].digest) if queued else (row.seq, row.head_digest)
            if tip != (seq, head):
                raise _CaseMovedError
            if approval is not None and not row.awaiting_approval:
                raise CaseStaleError(f"Case {case_ref} is not waiting for approval.")
            if queued:
                msg.state = HELD  # leaves when the peer receipts the step before it
            s.add(msg)
            ledger.append(s, entry)
            if approval is not None:
                row.awaiting_approval = False
                row.approved_by, row.approved_at = officer.name, approval[0].at
                row.approval_signature = approval[1]
                ledger.append(
                    s,
                    LedgerEntry.of(
                        "case.approved",
                        now,
                        case_ref=case_ref,
                        supervisor=officer.name,
                        form_digest=row.form_digest.hex(),
                        signature=approval[1].hex(),
                    ),
                )
            s.add(
                CasePendingRow(
                    case_id=row.id,
                    seq=seq + 1,
                    action=action.value,
                    at=now,
                    message_id=msg.message_id,
                    digest=applied.digest,
                    state_after=applied.case.state.value,
                )
            )
            if not queued:
                row.pending_action = action.value
                row.pending_message_id = msg.message_id
            row.updated_at, row.last_error = now, ""
            ledger.append(
                s,
                LedgerEntry.of(
                    "case.transition_sent",
                    now,
                    case_ref=case_ref,
                    seq=seq + 1,
                    action=action.value,
                    officer=officer.name,
                    digest=applied.digest.hex(),
                    message_id=format_uuid(msg.message_id),
                ),
            )
        self.core.on_submit()
        log.info(
            "case_transition_sent",
            case_ref=case_ref,
            action=action.value,
            seq=seq + 1,
            queued=bool(queued),
        )
        return case_ref

    # -- the peer's transitions -----------------------------------------------------------

    def _record_event(
        self, s: Session, row: CaseRow, applied: casework.Applied, agency: str, message_id: bytes
    ) -> None:
        party = Party.REQUESTING if agency == row.requesting else Party.REQUESTED
        s.add(
            CaseEventRow(
                case_id=row.id,
                seq=applied.body.seq,
                action=applied.action.value,
                party=party.value,
                agency=agency,
                at=applied.body.at,
                officer=applied.body.officer,
                message_id=message_id,
                digest=applied.digest,
                state_after=applied.case.state.value,
            )
        )
        row.state = applied.case.state.value
        row.seq, row.head_digest = applied.body.seq, applied.digest
        row.updated_at = max(row.updated_at, applied.body.at)
        ledger.append(
            s,
            LedgerEntry.of(
                "case.transition",
                now_ms(),
                case_ref=row.case_ref,
                # The other party may read this entry (ledger redaction), so both
                # agencies can compare a case step for step in each other's ledgers.
                peer=row.peer,
                seq=applied.body.seq,
                action=applied.action.value,
                by=agency,
                state=applied.case.state.value,
                digest=applied.digest.hex(),
                message_id=format_uuid(message_id),
            ),
        )
        metrics.CASE_TRANSITIONS.labels(action=applied.action.value).inc()

    def _on_submission(self, opened: Opened) -> Callable[[Session], None]:
        header = opened.header
        applied = casework.check_submission(header, opened.body)
        form = applied.body.form
        sealed = self.core.seal_to_self(form.SerializeToString(deterministic=True))
        case_type = casework.CASE_TYPE_NAMES[forms.case_type_of(form)]

        def apply(s: Session) -> None:
            if s.scalars(select(CaseRow.id).where(CaseRow.case_ref == header.case_ref)).first():
                raise casework.CaseConflictError(
                    f"Case {header.case_ref} was already submitted here."
                )
            row = CaseRow(
                case_ref=header.case_ref,
                case_type=case_type,
                role=Party.REQUESTED.value,
                requesting=header.sender,
                requested=self.agency,
                peer=header.sender,
                urgency=applied.case.urgency.value,
                state=CaseState.DRAFT.value,
                seq=0,
                head_digest=b"",
                opened_at=applied.body.at,
                updated_at=applied.body.at,
                requested_deadline=forms.deadline_of(form) or 0,
                handling_codes=codes_text(header.handling_codes),
                restricted_to="\n".join(header.restricted_to),
                form_sealed=sealed,
                form_digest=casework.form_digest(form),
                approved_by=applied.body.approval.supervisor,
                approved_at=applied.body.approval.at,
            )
            s.add(row)
            s.flush()
            self._record_event(s, row, applied, header.sender, header.message_id)

        return apply

    def _on_transition(self, opened: Opened) -> Callable[[Session], None]:
        header = opened.header
        data = opened.body
        body = casework.parse_body(data)  # malformed bodies are refused before any lock

        def apply(s: Session) -> None:
            row = s.scalars(
                select(CaseRow).where(CaseRow.case_ref == header.case_ref).with_for_update()
            ).first()
            if row is None or row.peer != header.sender:
                raise casework.CaseConflictError(
                    f"Case {header.case_ref[:128]} is not shared with {header.sender} here."
                )
            pending = self._pending(s, row)
            if pending and body.seq == row.seq + 2:
                # The peer applied our step in flight and built on it before its receipt
                # reached us: ours takes effect when the receipt arrives; retry then.
                raise casework.CaseNotYetError(
                    f"Case {row.case_ref}: step {body.seq} follows this node's step "
                    f"{row.seq + 1}, whose receipt has not arrived yet."
                )
            crossing = bool(pending) and body.seq == row.seq + 1
            if crossing and row.role == Party.REQUESTING.value:
                # Both parties acted on the same step: the requesting agency's stands.
                raise casework.CaseConflictError(
                    f"Case {row.case_ref}: step {body.seq} crossed this node's "
                    f"{pending[0].action}; the requesting agency's step stands."
                )
            case = _domain(row, self._events(s, row))
            applied = casework.check_transition(case, row.seq, row.head_digest, header, data)
            if crossing:
                # We are the requested party: the requesting agency's valid step stands,
                # ours are dropped here as the peer drops them (it refuses them).
                self._drop(
                    s,
                    row,
                    pending,
                    "overtaken",
                    f"overtaken by {header.sender}'s {applied.action.value}",
                )
            self._record_event(s, row, applied, header.sender, header.message_id)

        return apply

    def _drop(
        self, s: Session, row: CaseRow, steps: list[CasePendingRow], reason: str, why: str
    ) -> None:
        """Drop this node's queued steps: none of them takes effect on either node.

        The first one's message failed (refused, given up) or is overtaken; those behind
        it never leave. Each is ledgered with the reason; the officer sees `last_error`.
        """
        now = now_ms()
        first = steps[0]
        for step in steps:
            msg = s.scalars(
                select(MessageRow).where(
                    MessageRow.message_id == step.message_id, MessageRow.direction == "out"
                )
            ).first()
            cause = why if step is first else f"cancelled: {first.action} before it was {reason}"
            if msg is not None and msg.state != FAILED:
                msg.state, msg.lease_until = FAILED, 0
                msg.last_error = cause[:500]
            ledger.append(
                s,
                LedgerEntry.of(
                    "case.transition_failed",
                    now,
                    case_ref=row.case_ref,
                    action=step.action,
                    seq=step.seq,
                    reason=reason if step is first else "cancelled",
                    message_id=format_uuid(step.message_id),
                ),
            )
            s.delete(step)
        s.flush()
        row.pending_action, row.pending_message_id = "", b""
        row.last_error = f"{first.action} did not take effect: {why}"[:500]
        log.warning(
            "case_transition_dropped",
            case_ref=row.case_ref,
            action=first.action,
            reason=reason,
            steps=len(steps),
        )

    def _on_outcome(self, s: Session, msg: MessageRow, delivered: bool) -> None:
        """Our step in flight was receipted (apply it, release the next) or failed (drop)."""
        if msg.message_type not in CASE_MESSAGE_TYPES or not msg.case_ref:
            return
        row = s.scalars(
            select(CaseRow).where(CaseRow.case_ref == msg.case_ref).with_for_update()
        ).first()
        if row is None:
            return
        pending = self._pending(s, row)
        if not pending or pending[0].message_id != msg.message_id:
            if delivered:
                # A step this node dropped was receipted all the same: the peer broke the
                # step rule. Kept as evidence; our history does not take it.
                log.error("case_receipt_for_dropped_step", case_ref=row.case_ref, alert=True)
                ledger.append(
                    s,
                    LedgerEntry.of(
                        "case.receipt_for_dropped_step",
                        now_ms(),
                        case_ref=row.case_ref,
                        peer=row.peer,
                        message_id=format_uuid(msg.message_id),
                    ),
                )
            return
        first = pending[0]
        if not delivered:
            self._drop(s, row, pending, "refused", msg.last_error or "not delivered")
            return
        data = self.core.open_from_self(msg.self_copy or msg.envelope)
        body = casework.parse_body(data)
        action_enum = casework.action_of(body.action)
        after = _domain(row, self._events(s, row)).apply(
            Transition(
                row.case_ref,
                action_enum,
                Party(row.role),
                body.at,
                casework.reason_of(action_enum, body.details),
            )
        )
        applied = casework.Applied(after, body, casework.transition_digest(data), action_enum)
        s.delete(first)
        s.flush()
        self._record_event(s, row, applied, self.agency, msg.message_id)
        if len(pending) > 1:
            nxt = pending[1]
            held = s.scalars(
                select(MessageRow).where(
                    MessageRow.message_id == nxt.message_id, MessageRow.direction == "out"
                )
            ).first()
            if held is not None and held.state == HELD:
                held.state, held.next_attempt_at = QUEUED, now_ms()
            row.pending_action, row.pending_message_id = nxt.action, nxt.message_id
            self.core.on_submit()
        else:
            row.pending_action, row.pending_message_id = "", b""

    # -- legal clocks ---------------------------------------------------------------------

    def check_clocks(self, now: int | None = None) -> dict[str, int]:
        """Raise each newly overdue clock once (log alert, ledger); count all for metrics."""
        now = now_ms() if now is None else now
        counts = {"acknowledgement": 0, "response": 0}
        live = [s.value for s in CaseState if s not in TERMINAL_STATES]
        with self.core.db.write() as s:
            rows = s.scalars(
                select(CaseRow).where(
                    CaseRow.state.in_(live), CaseRow.state != CaseState.DRAFT.value
                )
            ).all()
            for row in rows:
                late = overdue(_domain(row, self._events(s, row)), self.policy, now)
                # A clock no longer late (met, or restarted after more information) is
                # forgotten, so it alerts again if it runs out again.
                alerted = set(filter(None, row.alerted.split(","))) & set(late)
                for clock in late:
                    counts[clock] += 1
                    if clock in alerted:
                        continue
                    alerted.add(clock)
                    log.warning(
                        "case_overdue",
                        alert=True,
                        case_ref=row.case_ref,
                        clock=clock,
                        role=row.role,
                        peer=row.peer,
                        urgency=row.urgency,
                    )
                    ledger.append(
                        s,
                        LedgerEntry.of(
                            "case.overdue",
                            now,
                            case_ref=row.case_ref,
                            clock=clock,
                            peer=row.peer,
                        ),
                    )
                row.alerted = ",".join(sorted(alerted))
        for clock, n in counts.items():
            metrics.CASES_OVERDUE.labels(clock=clock).set(n)
        return counts


class ClockWatch(Periodic):
    """Background thread: looks for overdue legal clocks at start, then every `every` s."""

    def __init__(self, desk: CaseDesk, every: float) -> None:
        super().__init__("case-clocks", every, "case_clock_check_failed", run_first=True)
        self.desk = desk

    def tick(self) -> None:
        self.desk.check_clocks()


# -- handling codes: onward transmission -----------------------------------------------------


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
        s.expunge(msg)
    if recipient == core.agency or core.directory.current().agency(recipient) is None:
        raise InvalidFieldError(f"Agency {recipient[:64]} is not another member of the federation.")
    envelope = Envelope.from_bytes(msg.envelope, core.limits)
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
    content = opb.Content.FromString(core.open_from_self(msg.envelope))
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
