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

from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from exchange import casework, forms, policy
from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange.case import (
    TERMINAL_STATES,
    CaseState,
    ClockLimits,
    ClockPolicy,
    Party,
    allowed_actions,
    deadlines,
    overdue,
)
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import (
    codes_of,
    codes_text,
    handling_from_wire,
)
from exchange.errors import InvalidFieldError
from exchange.ledger_entry import LedgerEntry
from node import metrics
from node.config import CasesSection
from node.services.case_steps import CaseSteps
from node.services.case_store import (
    CASE_MESSAGE_TYPES,
    SUBMISSION_TYPES,
    ApprovalError,
    CaseBusyError,
    CaseStaleError,
    case_handling,
    domain,
    events_of,
    local_of,
    names,
    row_of,
)
from node.services.messages import (
    NodeCore,
    Officer,
    PermissionDeniedError,
)
from node.storage import ledger
from node.storage.models import CaseRow, MessageContentRow, MessageRow

__all__ = [
    "CASE_MESSAGE_TYPES",
    "SUBMISSION_TYPES",
    "ApprovalError",
    "CaseBusyError",
    "CaseDesk",
    "CaseStaleError",
    "case_handling",
    "policy_of",
]

log = structlog.get_logger("mlax.cases")


def policy_of(cfg: CasesSection) -> ClockPolicy:
    def lim(ack: float, response: float) -> ClockLimits:
        return ClockLimits(ack_ms=int(ack * 1000), response_ms=int(response * 1000))

    return ClockPolicy(
        emergency=lim(cfg.emergency_ack_seconds, cfg.emergency_response_seconds),
        urgent=lim(cfg.urgent_ack_seconds, cfg.urgent_response_seconds),
        ordinary=lim(cfg.ordinary_ack_seconds, cfg.ordinary_response_seconds),
    )


class CaseDesk:
    """Case operations over the node's database and identity."""

    def __init__(self, core: NodeCore, cfg: CasesSection) -> None:
        self.core = core
        self.cfg = cfg
        self.policy = policy_of(cfg)
        self.agency = core.agency
        # Acting and the peer's steps (the step rule) live in CaseSteps.
        self.steps = CaseSteps(core, cfg)

    def act(self, officer: Officer, req: cpb.CaseActionRequest) -> str:
        return self.steps.act(officer, req)

    def approve(self, officer: Officer, req: cpb.ApproveCaseRequest, cert_pem: bytes) -> str:
        return self.steps.approve(officer, req, cert_pem)

    # -- reading --------------------------------------------------------------------------

    def handling(self, s: Session, case_ref: str) -> policy.Handling:
        """Who may read the case here (`case_handling`): its evidence is at least as
        restricted (`policy.evidence_handling`)."""
        return case_handling(row_of(s, case_ref))

    def counterpart(self, s: Session, case_ref: str) -> str:
        """The other party of a live case (evidence goes there); raises if it takes none."""
        row = row_of(s, case_ref)
        if row.state in (CaseState.DRAFT.value, CaseState.CLOSED.value):
            raise CaseStaleError(
                f"Case {case_ref} is {row.state}: evidence travels only on a submitted, open case."
            )
        return row.peer

    def summary(
        self, s: Session, row: CaseRow, reader: Officer, now: int | None = None
    ) -> cpb.CaseSummary:
        """The case as `reader` may see it: the legal hold's reason, which may name people,
        only if the reader may read the case's content (the hold itself stays visible)."""
        now = now_ms() if now is None else now
        case = domain(row, events_of(s, row))
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
        local, local_seq, _, queued = local_of(s, row, case)
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
            restricted_to=list(names(row.restricted_to)),
            last_error=row.last_error,
            queued_actions=[p.action for p in queued],
            local_seq=local_seq,
            local_state=local.state.value,
            held_at=row.held_at,
            held_by=row.held_by,
            hold_reason=row.hold_reason if self._may_read(reader, row) else "",
            purged_at=row.purged_at,
            purge_rule=row.purge_rule,
        )

    def _may_read(self, reader: Officer, row: CaseRow) -> bool:
        return policy.may_read(
            policy.OfficerId(self.agency, reader.name), reader.role, case_handling(row)
        ).allowed

    def list_cases(self, officer: Officer, req: cpb.ListCasesRequest) -> cpb.ListCasesResponse:
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
            out = [self.summary(s, r, officer, now) for r in s.scalars(q).all()]
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
            row = row_of(s, case_ref)
            view = cpb.CaseView(summary=self.summary(s, row, officer))
            events = events_of(s, row)
            # Each step's sealed bytes: this node's self-copy of its own steps, the
            # received envelope of the peer's.
            sealed = {
                mid: own or envelope
                for mid, envelope, own in s.execute(
                    select(
                        MessageRow.message_id,
                        MessageContentRow.envelope,
                        MessageContentRow.self_copy,
                    )
                    .join(MessageContentRow, MessageContentRow.message_pk == MessageRow.id)
                    .where(
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
        if form_sealed:  # empty once purged (the summary says when and under which rule)
            view.form.CopyFrom(fpb.CaseForm.FromString(self.core.open_from_self(form_sealed)))
        for event, e in zip(view.timeline, events, strict=True):
            data = sealed.get(e.message_id)
            if data is None:
                continue
            body = casework.parse_body(self.core.open_from_self(data))
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

    # -- legal clocks ---------------------------------------------------------------------

    def check_clocks(self, now: int | None = None) -> dict[str, int]:
        """Raise each newly overdue clock once (log alert, ledger); count all for metrics."""
        now = now_ms() if now is None else now
        counts = {"acknowledgement": 0, "response": 0}
        live = [s.value for s in CaseState if s not in TERMINAL_STATES]
        raised: list[dict[str, str]] = []
        with self.core.db.write() as s:
            rows = s.scalars(
                select(CaseRow).where(
                    CaseRow.state.in_(live), CaseRow.state != CaseState.DRAFT.value
                )
            ).all()
            for row in rows:
                late = overdue(domain(row, events_of(s, row)), self.policy, now)
                # A clock no longer late (met, or restarted after more information) is
                # forgotten, so it alerts again if it runs out again.
                alerted = set(filter(None, row.alerted.split(","))) & set(late)
                for clock in late:
                    counts[clock] += 1
                    if clock in alerted:
                        continue
                    alerted.add(clock)
                    raised.append(
                        {
                            "case_ref": row.case_ref,
                            "clock": clock,
                            "role": row.role,
                            "peer": row.peer,
                            "urgency": row.urgency,
                        }
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
        # Alerts are logged once recorded: whoever sees one finds its ledger entry.
        for alert in raised:
            log.warning("case_overdue", alert=True, **alert)
        for clock, n in counts.items():
            metrics.CASES_OVERDUE.labels(clock=clock).set(n)
        return counts
