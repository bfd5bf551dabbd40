"""Statistics releases on a node (docs/statistics.md, ADR 0015).

A release covers a stated period of this node's own data: its cases (sent and
received, with their steps) and the victim-identification queries its ledger records.
The node turns them into plain facts, `exchange.stats` into tables of true values over
fixed cells, and OpenDP adds discrete Laplace noise to each table here, the only place
noise is drawn. The true values never leave this module: they are not stored, logged or
ledgered. Drafting a release draws its noise and charges its epsilon to every calendar
year the period touches, in the transaction that stores it; a year's budget refuses a
release that would exceed it, saying by how much. A supervisor other than the drafter
then signs the release's digest (four-eyes, as for requests), and the release is final.
"""

from __future__ import annotations

import json
import math
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import version
from typing import Any

import opendp.prelude as dp
import structlog
from google.protobuf.message import DecodeError
from sqlalchemy import select
from sqlalchemy.orm import Session

from exchange import casework
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import statistics_pb2 as spb
from exchange.case import Action, Case, CaseState, ClockPolicy, Party, deadlines, overdue
from exchange.encoding import now_ms
from exchange.envelope import MessageType, Opened
from exchange.errors import (
    ConflictError,
    InvalidFieldError,
    MissingError,
    MlaxError,
    PolicyError,
)
from exchange.ledger_entry import LedgerEntry
from exchange.stats import release as rel
from exchange.stats.export import combine
from exchange.stats.facts import (
    NOT_RECORDED,
    CaseFact,
    QueryFact,
    offence_category,
    person_sought,
    refusal_ground,
)
from exchange.stats.tables import TABLES, Cell, Fact, TableDef, true_values
from node.config import CasesSection, StatisticsSection
from node.services.case_store import check_approval, domain
from node.services.cases import policy_of
from node.services.messages import NodeCore, Officer
from node.storage import ledger
from node.storage.models import (
    CaseEventRow,
    CaseRow,
    LedgerEntryRow,
    MessageContentRow,
    MessageRow,
    StatsBudgetRow,
    StatsReceivedRow,
    StatsReleaseRow,
)

log = structlog.get_logger("mlax.stats")

dp.enable_features("contrib")

DRAFT, FINAL = "draft", "final"
_DAY_MS = 86_400_000
_LIST_DEFAULT, _LIST_MAX = 50, 1000


class ReleaseStateError(ConflictError):
    """A release that is not in the state the call needs."""


def library() -> str:
    return f"opendp {version('opendp')}"


# -- facts ------------------------------------------------------------------------------


def _days(from_ms: int, to_ms: int) -> int:
    return max(0, math.ceil((to_ms - from_ms) / _DAY_MS))


def _outcome(row: CaseRow, events: Sequence[CaseEventRow]) -> str:
    state = row.state
    if state == CaseState.CLOSED.value:
        # A closed case counts by where it stood before it was closed.
        before = [e.state_after for e in events if e.state_after != CaseState.CLOSED.value]
        state = before[-1] if before else state
    if state in ("executed", "partially_executed", "refused", "withdrawn"):
        return state
    return "closed" if state == CaseState.CLOSED.value else "open"


def _met(case: Case, events: Sequence[CaseEventRow], i: int, clock: str, p: ClockPolicy) -> bool:
    """Whether events[i], the step that stopped `clock`, came before it ran out: the
    deadline is the one exchange.case.deadlines gave just before that step."""
    before = replace(case, state=CaseState(events[i - 1].state_after), history=case.history[:i])
    due = deadlines(before, p)
    limit = due.ack_due if clock == "acknowledgement" else due.response_due
    return limit is None or events[i].at <= limit


def case_fact(
    row: CaseRow,
    events: Sequence[CaseEventRow],
    p: ClockPolicy,
    now: int,
    offence_category: str = NOT_RECORDED,
    *,
    refusal_ground: str = NOT_RECORDED,
    person: tuple[str, str, str] = (NOT_RECORDED, NOT_RECORDED, NOT_RECORDED),
) -> CaseFact | None:
    """The fact of one submitted case, or None for one that never left (a draft).

    `person` is the sex, age band and nationality of the person a follow-up seeks."""
    submitted = next((e.at for e in events if e.action == Action.SUBMIT.value), None)
    if submitted is None:
        return None
    case = domain(row, list(events))
    late = overdue(case, p, now)
    acked = next((i for i, e in enumerate(events) if e.party == Party.REQUESTED.value), None)
    decided = next(
        (i for i, e in enumerate(events) if e.action in (Action.ACCEPT.value, Action.REFUSE.value)),
        None,
    )
    executed = next((e.at for e in events if e.action == Action.REPORT_EXECUTED.value), None)
    return CaseFact(
        case_type=row.case_type,
        direction="sent" if row.role == Party.REQUESTING.value else "received",
        peer=row.peer,
        urgency=row.urgency,
        outcome=_outcome(row, events),
        offence_category=offence_category,
        refusal_ground=refusal_ground,
        sex=person[0],
        age_band=person[1],
        nationality=person[2],
        ack_days=None if acked is None else _days(submitted, events[acked].at),
        execution_days=None if executed is None else _days(submitted, executed),
        ack_on_time=(
            _met(case, events, acked, "acknowledgement", p)
            if acked is not None
            else (False if "acknowledgement" in late else None)
        ),
        response_on_time=(
            _met(case, events, decided, "response", p)
            if decided is not None
            else (False if "response" in late else None)
        ),
    )


def _form(row: CaseRow, open_form: Callable[[bytes], bytes]) -> fpb.CaseForm | None:
    """A case's form (sealed to this node), or None once purged or no longer readable."""
    if not row.form_sealed:
        return None
    try:
        return fpb.CaseForm.FromString(open_form(row.form_sealed))
    except (MlaxError, DecodeError):
        return None


def form_category(row: CaseRow, open_form: Callable[[bytes], bytes]) -> str:
    """The offence category of a case's form (sealed to this node): `not_recorded` when
    the form records none, was purged, or can no longer be opened."""
    form = _form(row, open_form)
    return NOT_RECORDED if form is None else offence_category(form)


def step_ground(sealed: bytes | None, open_sealed: Callable[[bytes], bytes]) -> str:
    """The first ground of a refusal step, from the step's envelope as this node keeps it
    (its own self-copy, or the envelope the peer sealed to it): `not_recorded` when the
    details were purged or cannot be read."""
    if not sealed:
        return NOT_RECORDED
    try:
        body = casework.parse_body(open_sealed(sealed))
    except (MlaxError, DecodeError):
        return NOT_RECORDED
    return refusal_ground(body.details) if body.HasField("details") else NOT_RECORDED


def _refusals(s: Session, events: dict[int, list[CaseEventRow]]) -> dict[bytes, bytes | None]:
    """The sealed bytes of each refused case's refusal step, by message id."""
    ids = [
        e.message_id
        for evs in events.values()
        for e in evs
        if e.action == Action.REFUSE.value and e.message_id
    ]
    sealed: dict[bytes, bytes | None] = {}
    for start in range(0, len(ids), 500):
        for mid, envelope, own in s.execute(
            select(MessageRow.message_id, MessageContentRow.envelope, MessageContentRow.self_copy)
            .join(MessageContentRow, MessageContentRow.message_pk == MessageRow.id)
            .where(MessageRow.message_id.in_(ids[start : start + 500]))
        ):
            sealed[mid] = own or envelope
    return sealed


def case_facts(
    s: Session,
    period: rel.Period,
    p: ClockPolicy,
    now: int,
    open_form: Callable[[bytes], bytes] | None = None,
    countries: Sequence[str] = (),
) -> list[CaseFact]:
    """The facts of the cases opened in the period; with `open_form` (the node's
    `open_from_self`), each with the offence category its form records, a refused case
    with the first ground of its refusal, and a follow-up with the sex, age band (at the
    period's end) and nationality (one of `countries`, else "other") of the person it
    seeks. Each is read from what the node keeps sealed to itself, and only that category
    is kept."""
    rows = s.scalars(
        select(CaseRow).where(
            CaseRow.opened_at >= period.start_ms,
            CaseRow.opened_at < period.end_ms,
            CaseRow.state != CaseState.DRAFT.value,
        )
    ).all()
    events: dict[int, list[CaseEventRow]] = defaultdict(list)
    ids = [r.id for r in rows]
    for start in range(0, len(ids), 500):
        for e in s.scalars(
            select(CaseEventRow)
            .where(CaseEventRow.case_id.in_(ids[start : start + 500]))
            .order_by(CaseEventRow.case_id, CaseEventRow.seq)
        ):
            events[e.case_id].append(e)
    if open_form is None:
        facts = [case_fact(r, events[r.id], p, now) for r in rows]
        return [f for f in facts if f is not None]
    refusals = _refusals(s, events)
    out: list[CaseFact] = []
    for r in rows:
        form = _form(r, open_form)
        refusal = next(
            (e.message_id for e in events[r.id] if e.action == Action.REFUSE.value), None
        )
        fact = case_fact(
            r,
            events[r.id],
            p,
            now,
            NOT_RECORDED if form is None else offence_category(form),
            refusal_ground=(
                NOT_RECORDED if refusal is None else step_ground(refusals.get(refusal), open_form)
            ),
            person=(
                person_sought(form, period.end, countries)
                if form is not None and r.case_type == "victim-id"
                else (NOT_RECORDED, NOT_RECORDED, NOT_RECORDED)
            ),
        )
        if fact is not None:
            out.append(fact)
    return out


# The best answer for one person: a strong hit over a possible one over no hit.
_RANK = {"hit_strong": 0, "hit_possible": 1, "no_hit": 2, "unmatchable": 3, "not_answered": 4}


def _answer(result: str, band: str) -> str:
    """A ledgered answer (node.client.matching's outcomes) as a query table's result."""
    if result == "hit":
        return "hit_strong" if band == "strong" else "hit_possible"
    return {"no-hit": "no_hit", "unmatchable": "unmatchable"}.get(result, "not_answered")


def query_facts(s: Session, period: rel.Period) -> list[QueryFact]:
    """One fact per person this node asked about, from its match.query and match.answer
    ledger entries (a redacted entry counts as nothing)."""
    asked: dict[str, tuple[int, int]] = {}
    best: dict[tuple[str, int], str] = {}
    for kind, entry in s.execute(
        select(LedgerEntryRow.kind, LedgerEntryRow.entry).where(
            LedgerEntryRow.kind.in_(("match.query", "match.answer")),
            LedgerEntryRow.at >= period.start_ms,
            LedgerEntryRow.at < period.end_ms,
        )
    ):
        if entry is None:
            continue
        doc: dict[str, Any] = json.loads(entry)
        if kind == "match.query":
            asked[doc["query_id"]] = (int(doc["queries"]), int(doc["unmatchable"]))
            continue
        key = (doc["query_id"], int(doc["query"]))
        answer = _answer(str(doc["result"]), str(doc["band"]))
        if key not in best or _RANK[answer] < _RANK[best[key]]:
            best[key] = answer
    by_query: dict[str, list[str]] = defaultdict(list)
    for (query_id, _), answer in best.items():
        by_query[query_id].append(answer)
    facts: list[QueryFact] = []
    for query_id, (queries, unmatchable) in asked.items():
        answered = by_query[query_id][:queries]
        facts.extend(QueryFact(a) for a in answered)
        rest = queries - len(answered)
        facts.extend(QueryFact("unmatchable") for _ in range(min(unmatchable, rest)))
        facts.extend(QueryFact("not_answered") for _ in range(max(0, rest - unmatchable)))
    return facts


# -- noise --------------------------------------------------------------------------------


def measurement(scale: float) -> Any:
    """OpenDP's discrete Laplace on a vector of integers, L1 distance in, epsilon out."""
    return dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int), scale=scale
    )


def noisy_table(p: rel.TablePlan, values: dict[Cell, int]) -> tuple[dict[Cell, int], float]:
    """The table with noise added to every cell, and the epsilon OpenDP says it spends."""
    m = measurement(p.scale)
    epsilon = float(m.map(p.sensitivity))
    if epsilon > p.epsilon + rel.EPSILON_SLACK:
        raise RuntimeError(f"{p.table.name}: OpenDP gives epsilon {epsilon}, planned {p.epsilon}")
    cells = list(values)
    noisy = m([values[c] for c in cells])
    return dict(zip(cells, (int(v) for v in noisy), strict=True)), epsilon


def release_tables(
    tables: Sequence[TableDef],
    facts: Sequence[Fact],
    peers: Sequence[str],
    cfg: StatisticsSection,
    countries: Sequence[str] = (),
) -> tuple[list[rel.TablePlan], dict[str, dict[Cell, int]]]:
    """Every table noised, with each plan's epsilon as OpenDP computed it."""
    plans = []
    noisy: dict[str, dict[Cell, int]] = {}
    for p in rel.plan(tables, cfg.epsilon_per_release, cfg.duration_clamp_days):
        values = true_values(p.table, facts, peers, cfg.duration_clamp_days, countries)
        noisy[p.table.name], epsilon = noisy_table(p, values)
        plans.append(replace(p, epsilon=epsilon))
    return plans, noisy


# -- the desk -----------------------------------------------------------------------------


class StatsDesk:
    """Preview, draft, approve, list and show releases of this node's statistics."""

    def __init__(self, core: NodeCore, cfg: StatisticsSection, cases: CasesSection) -> None:
        self.core = core
        self.cfg = cfg
        self.policy = policy_of(cases)
        self.tables: tuple[TableDef, ...] = TABLES
        # Peers' approved releases arrive as envelopes of their own type.
        core.receive_hooks[MessageType.STATISTICS_RELEASE] = self._on_release

    def _peers(self) -> list[str]:
        return sorted(
            a.agency_id
            for a in self.core.directory.current().agencies
            if a.agency_id != self.core.agency
        )

    def _countries(self) -> list[str]:
        """The ISO alpha-2 countries of the directory's agencies (the nationality cells)."""
        return sorted({a.country for a in self.core.directory.current().agencies})

    def _period(self, req: spb.StatsPeriodRequest) -> rel.Period:
        period = rel.Period.parse(req.start, req.end)
        if period.start_ms > now_ms():
            raise InvalidFieldError(f"The period starts in the future ({req.start}).")
        return period

    def _params(self, period: rel.Period, epsilon: float) -> rel.Parameters:
        return rel.Parameters(
            self.core.agency,
            period,
            epsilon,
            self.cfg.threshold,
            self.cfg.duration_clamp_days,
            library(),
        )

    def _budget(
        self, s: Session, years: Sequence[int], extra: float = 0.0
    ) -> list[spb.StatsBudgetYear]:
        spent = self._spent(s, years)
        return [
            spb.StatsBudgetYear(
                year=y, spent=spent.get(y, 0.0) + extra, budget=self.cfg.yearly_budget
            )
            for y in years
        ]

    @staticmethod
    def _spent(s: Session, years: Sequence[int], lock: bool = False) -> dict[int, float]:
        q = select(StatsBudgetRow).where(StatsBudgetRow.year.in_(list(years)))
        if lock:
            q = q.with_for_update()
        return {r.year: r.spent for r in s.scalars(q)}

    def preview(self, req: spb.StatsPeriodRequest) -> spb.StatsReleaseView:
        """The tables, scales and epsilon a release would have, and what the budget would
        be after it; no data is read and nothing is spent or ledgered."""
        period = self._period(req)
        plans = rel.plan(self.tables, self.cfg.epsilon_per_release, self.cfg.duration_clamp_days)
        doc = rel.document(
            "",
            self._params(period, self.cfg.epsilon_per_release),
            plans,
            {t.table.name: {} for t in plans},
            self._peers(),
            self._countries(),
        )
        for t in doc["tables"]:
            del t["cells"]
        with self.core.db.read() as s:
            budget = self._budget(s, period.years, self.cfg.epsilon_per_release)
        return spb.StatsReleaseView(document=rel.canonical(doc), budget=budget)

    def draft(self, officer: Officer, req: spb.StatsPeriodRequest) -> spb.StatsReleaseView:
        period = self._period(req)
        now = now_ms()
        # The cells are fixed by the directory before any data is read.
        peers, countries = self._peers(), self._countries()
        # Refuse before reading any data when the budget cannot pay for it.
        with self.core.db.read() as s:
            rel.charge(
                self._spent(s, period.years),
                period.years,
                self.cfg.epsilon_per_release,
                self.cfg.yearly_budget,
            )
            facts: list[Fact] = [
                *case_facts(s, period, self.policy, now, self.core.open_from_self, countries),
                *query_facts(s, period),
            ]
        plans, noisy = release_tables(self.tables, facts, peers, self.cfg, countries)
        del facts
        epsilon = math.fsum(p.epsilon for p in plans)
        released = rel.suppressed(plans, noisy, self.cfg.threshold)
        del noisy
        release_id = str(uuid.uuid4())
        doc = rel.document(
            release_id, self._params(period, epsilon), plans, released, peers, countries
        )
        body, digest = rel.canonical(doc), rel.digest(doc)
        shown = sum(len(c) for c in released.values())
        total = sum(len(p.table.domain(peers, countries)) for p in plans)
        with self.core.db.write() as s:
            # Charged in the transaction that stores the release: two drafts at once (on
            # two replicas) cannot both pass the check.
            after = rel.charge(
                self._spent(s, period.years, lock=True),
                period.years,
                epsilon,
                self.cfg.yearly_budget,
            )
            for year in period.years:
                row = s.get(StatsBudgetRow, year)
                if row is None:
                    s.add(StatsBudgetRow(year=year, spent=after[year]))
                else:
                    row.spent = after[year]
            s.add(
                StatsReleaseRow(
                    release_id=release_id,
                    period_start=period.start.isoformat(),
                    period_end=period.end.isoformat(),
                    epsilon=epsilon,
                    state=DRAFT,
                    document=body,
                    digest=digest,
                    cells_released=shown,
                    cells_suppressed=total - shown,
                    drafted_by=officer.name,
                    drafted_at=now,
                )
            )
            ledger.append(
                s,
                LedgerEntry.of(
                    "stats.release_drafted",
                    now,
                    release_id=release_id,
                    officer=officer.name,
                    period_start=period.start.isoformat(),
                    period_end=period.end.isoformat(),
                    epsilon=repr(epsilon),
                    digest=digest.hex(),
                ),
            )
        log.info(
            "stats_release_drafted", officer=officer.name, release_id=release_id, epsilon=epsilon
        )
        return self.get(release_id)

    def approve(
        self, officer: Officer, req: spb.StatsApproveRequest, cert_pem: bytes
    ) -> spb.StatsReleaseView:
        now = now_ms()
        with self.core.db.read() as s:
            row = self._row(s, req.release_id)
            if row.state != DRAFT:
                raise ReleaseStateError(f"Release {row.release_id} is already final.")
            if bytes(req.digest) != row.digest:
                raise ReleaseStateError(
                    f"Release {row.release_id} differs from the one you approved."
                )
        check_approval(
            officer.name,
            row.drafted_by,
            f"release {row.release_id}",
            at=req.at,
            message=rel.approval_message(row.release_id, row.digest, officer.name, req.at),
            signature=bytes(req.signature),
            cert_pem=cert_pem,
        )
        with self.core.db.write() as s:
            row = self._row(s, req.release_id)
            if row.state != DRAFT:
                raise ReleaseStateError(f"Release {row.release_id} is already final.")
            row.state = FINAL
            row.approved_by = officer.name
            row.approved_at = req.at
            row.approval_signature = bytes(req.signature)
            # The final release goes to the directory's statistics coordinators, else to
            # every peer, in this transaction: approved and queued together, or neither
            # (the same outbox as every message).
            directory = self.core.directory.current()
            for peer in rel.recipients(
                [a.agency_id for a in directory.agencies],
                directory.statistics_coordinators,
                self.core.agency,
            ):
                outgoing, submitted = self.core.outbound(
                    officer.name, peer, row.document, MessageType.STATISTICS_RELEASE
                )
                s.add(outgoing)
                ledger.append(s, submitted)
            ledger.append(
                s,
                LedgerEntry.of(
                    "stats.release_approved",
                    now,
                    release_id=row.release_id,
                    supervisor=officer.name,
                    digest=row.digest.hex(),
                    signature=bytes(req.signature).hex(),
                ),
            )
        self.core.on_submit()
        log.info("stats_release_approved", officer=officer.name, release_id=req.release_id)
        return self.get(req.release_id)

    @staticmethod
    def _row(s: Session, release_id: str) -> StatsReleaseRow:
        row = (
            s.scalars(
                select(StatsReleaseRow).where(StatsReleaseRow.release_id == release_id)
            ).first()
            if len(release_id) <= 36
            else None
        )
        if row is None:
            raise MissingError(f"No statistics release {release_id[:36]!r} on this node.")
        return row

    @staticmethod
    def summary(row: StatsReleaseRow) -> spb.StatsReleaseSummary:
        return spb.StatsReleaseSummary(
            release_id=row.release_id,
            period_start=row.period_start,
            period_end=row.period_end,
            epsilon=row.epsilon,
            state=row.state,
            drafted_by=row.drafted_by,
            drafted_at=row.drafted_at,
            approved_by=row.approved_by,
            approved_at=row.approved_at,
            digest=row.digest,
            cells_released=row.cells_released,
            cells_suppressed=row.cells_suppressed,
        )

    def get(self, release_id: str) -> spb.StatsReleaseView:
        with self.core.db.read() as s:
            row = self._row(s, release_id)
            period = rel.Period.parse(row.period_start, row.period_end)
            return spb.StatsReleaseView(
                summary=self.summary(row),
                document=row.document,
                budget=self._budget(s, period.years),
            )

    def list(self, req: spb.StatsListRequest) -> spb.StatsListResponse:
        limit = min(req.limit or _LIST_DEFAULT, _LIST_MAX)
        with self.core.db.read() as s:
            rows = s.scalars(
                select(StatsReleaseRow).order_by(StatsReleaseRow.drafted_at.desc()).limit(limit)
            ).all()
            own = select(StatsReleaseRow.period_start, StatsReleaseRow.period_end).where(
                StatsReleaseRow.state == FINAL
            )
            received = select(StatsReceivedRow.period_start, StatsReceivedRow.period_end)
            held = s.execute(own.union(received)).all()
        periods = sorted({(a, b) for a, b in held}, key=lambda p: (p[1], p[0]), reverse=True)
        return spb.StatsListResponse(
            releases=[self.summary(r) for r in rows],
            periods=[spb.StatsPeriodRequest(start=a, end=b) for a, b in periods[:limit]],
        )

    # -- peers' releases and the federation table ------------------------------------------

    def _on_release(self, opened: Opened) -> Callable[[Session], None]:
        """Check a peer's release on arrival; the returned step stores it."""
        header = opened.header
        # Only a coordinator the directory names takes peers' releases (every member when
        # none is named): the rule that routes a release, applied to this node.
        directory = self.core.directory.current()
        if self.core.agency not in rel.recipients(
            [a.agency_id for a in directory.agencies],
            directory.statistics_coordinators,
            header.sender,
        ):
            raise PolicyError("This node is not a statistics coordinator the directory names.")
        try:
            doc = json.loads(opened.body)
            rel.validate(doc, header.sender)
            canonical = rel.canonical(doc) == opened.body
        except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
            # Any parse error, too deep a nesting included; validate's own refusals pass.
            raise InvalidFieldError("A statistics release is a JSON document.") from None
        if not canonical:
            raise InvalidFieldError("A statistics release travels as its canonical JSON.")

        def apply(s: Session) -> None:
            held = s.scalars(
                select(StatsReceivedRow).where(
                    StatsReceivedRow.agency == header.sender,
                    StatsReceivedRow.period_start == doc["period"]["start"],
                    StatsReceivedRow.period_end == doc["period"]["end"],
                )
            ).all()
            if any(r.release_id == doc["release_id"] for r in held):
                return  # the same release again (under a new message id): kept once
            # One release per agency and period: a newer one replaces what it sent before.
            for r in held:
                s.delete(r)
            s.add(
                StatsReceivedRow(
                    agency=header.sender,
                    release_id=doc["release_id"],
                    period_start=doc["period"]["start"],
                    period_end=doc["period"]["end"],
                    document=bytes(opened.body),
                    message_id=header.message_id,
                    received_at=now_ms(),
                )
            )

        return apply

    def federation(self, req: spb.StatsPeriodRequest) -> spb.StatsFederationView:
        """This node's newest final release of exactly the period, and each peer's newest
        received one, combined (exchange.stats.export.combine)."""
        period = rel.Period.parse(req.start, req.end)
        start, end = period.start.isoformat(), period.end.isoformat()
        newest: dict[str, bytes] = {}
        with self.core.db.read() as s:
            own = s.scalars(
                select(StatsReleaseRow.document)
                .where(
                    StatsReleaseRow.state == FINAL,
                    StatsReleaseRow.period_start == start,
                    StatsReleaseRow.period_end == end,
                )
                .order_by(StatsReleaseRow.approved_at.desc())
                .limit(1)
            ).first()
            if own is not None:
                newest[self.core.agency] = own
            for agency, document in s.execute(
                select(StatsReceivedRow.agency, StatsReceivedRow.document)
                .where(StatsReceivedRow.period_start == start, StatsReceivedRow.period_end == end)
                .order_by(StatsReceivedRow.received_at)
            ):
                newest[agency] = document
        if not newest:
            raise MissingError(f"No release of {start} to {end} is held on this node.")
        table = combine([json.loads(d) for _, d in sorted(newest.items())])
        return spb.StatsFederationView(table=rel.canonical(table))
