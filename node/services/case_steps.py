"""This node's case steps and the peer's: the step rule of docs/protocol-casework.md.

An officer's step is built on the case's local head (its applied steps and this node's
queued ones), queued in the outbox with its ledger entry, and applied here only when the
peer's receipt arrives; the next queued step leaves then. The peer's steps are checked
and applied in the transaction that stores their envelope. When steps cross, the
requesting agency's stands (ADR 0008).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import casework, forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import (
    Action,
    CaseState,
    Party,
    Transition,
)
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import (
    MessageType,
    Opened,
    codes_text,
)
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.config import CasesSection
from node.services.case_store import (
    CASE_MESSAGE_TYPES,
    SUBMISSION_TYPES,
    CaseBusyError,
    CaseStaleError,
    _CaseMovedError,
    case_handling,
    check_approval,
    check_may_act,
    domain,
    events_of,
    local_of,
    pending_of,
    row_of,
)
from node.services.messages import (
    FAILED,
    HELD,
    QUEUED,
    NodeCore,
    Officer,
)
from node.storage import ledger
from node.storage.models import CaseEventRow, CasePendingRow, CaseRow, MessageRow

log = structlog.get_logger("mlax.cases")


class CaseSteps:
    """Acting on cases (officers, supervisors) and applying the peer's steps and receipts."""

    def __init__(self, core: NodeCore, cfg: CasesSection) -> None:
        self.core = core
        self.cfg = cfg
        self.agency = core.agency
        for t in SUBMISSION_TYPES:
            core.receive_hooks[t] = self._on_submission
        core.receive_hooks[MessageType.CASE_TRANSITION] = self._on_transition
        core.on_outcome({*SUBMISSION_TYPES, MessageType.CASE_TRANSITION}, self._on_outcome)
        # A case step is never given up while its fate at the peer is unknown: delivery
        # keeps asking until the peer answers with its receipt or a refusal.
        core.settle_types.update(CASE_MESSAGE_TYPES)

    def act(self, officer: Officer, req: cpb.CaseActionRequest) -> str:
        action = casework.action_of(req.action)
        with self.core.db.read() as s:
            row = row_of(s, req.case_ref)
            s.expunge(row)
        check_may_act(self.core.db, self.core.agency, officer, row, action.value)
        with self.core.db.read() as s:
            row = row_of(s, req.case_ref)
            pending = pending_of(s, row)
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
                return self.send(officer, row.case_ref, Action.SUBMIT, None)
            local_draft = row.seq == 0 and not pending
        # A draft that never left: withdrawing it (also from the supervisor's queue) or
        # closing it concerns this node only. If its submission left meanwhile (a
        # supervisor approved it), the action queues behind the submission instead.
        if local_draft and self._act_locally(officer, req.case_ref, action):
            return req.case_ref
        return self.send(officer, req.case_ref, action, req.details, expected=req.expected_seq)

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
            row = row_of(s, case_ref, lock=True)
            if row.awaiting_approval or row.seq or pending_of(s, row):
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
            row = row_of(s, case_ref, lock=True)
            if row.seq != 0 or pending_of(s, row):
                return False
            case = domain(row, [])
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
        with self.core.db.read() as s:
            row = row_of(s, req.case_ref)
            if not row.awaiting_approval:
                raise CaseStaleError(f"Case {row.case_ref} is not waiting for approval.")
            if bytes(req.form_digest) != row.form_digest:
                raise CaseStaleError(
                    f"The draft of case {row.case_ref} differs from the one you approved."
                )
        check_approval(
            officer.name,
            row.created_by,
            f"case {row.case_ref}",
            at=req.at,
            message=casework.approval_message(req.case_ref, row.form_digest, officer.name, req.at),
            signature=bytes(req.signature),
            cert_pem=cert_pem,
        )
        approval = cpb.CaseApproval(supervisor=officer.name, at=req.at, form_digest=row.form_digest)
        return self.send(
            officer, req.case_ref, Action.SUBMIT, None, approval=(approval, bytes(req.signature))
        )

    def send(
        self,
        officer: Officer,
        case_ref: str,
        action: Action,
        details: fpb.TransitionDetails | None,
        approval: tuple[cpb.CaseApproval, bytes] | None = None,
        expected: int = 0,
        also: Sequence[LedgerEntry] = (),
    ) -> str:
        """Build this node's next step of the case, chained to its newest queued step.

        The step leaves at once if nothing of this case is on its way to the peer, else it
        waits (HELD) behind the step before it. If the case moved between reading it and
        storing the step (a peer's step arrived, another officer acted), the step is built
        again on the new head, unless the officer pinned the step they looked at. `also`
        are ledger entries the caller's rule adds (a disclosure's), stored in the same
        transaction as the step: both or neither.
        """
        for _ in range(3):
            try:
                return self._send_once(officer, case_ref, action, details, approval, expected, also)
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
        also: Sequence[LedgerEntry] = (),
    ) -> str:
        with self.core.db.read() as s:
            row = row_of(s, case_ref)
            case, seq, head, pending = local_of(s, row)
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
            row = row_of(s, case_ref, lock=True)
            queued = pending_of(s, row)
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
            for extra in also:
                ledger.append(s, extra)
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
            pending = pending_of(s, row)
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
            case = domain(row, events_of(s, row))
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
        pending = pending_of(s, row)
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
        data = self.core.open_from_self(msg.content.self_copy or msg.content.envelope)
        body = casework.parse_body(data)
        action_enum = casework.action_of(body.action)
        after = domain(row, events_of(s, row)).apply(
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
