"""Statistics releases on a node: the differencing attack, the budget, four-eyes.

The differencing attack: an adversary holds two releases over periods that differ by
one case (or, equivalently, knows everything but whether one case exists) and looks at
the cell that case falls in. Differential privacy says that for every output bucket B,
P[B | with the case] <= e^epsilon * P[B | without it], and the other way round. The test
runs the node's own noise path (OpenDP's discrete Laplace at the scale the plan gives,
then suppression on the noisy value) many times on both datasets and checks that
inequality on the empirical frequencies, with an empirical Bernstein bound (Maurer &
Pontil 2009) on each frequency at a total failure probability of 1e-9: OpenDP cannot be
seeded, so the slack, not a seed, keeps the test from flaking. The same samples judged
against a third of the epsilon must fail, so the check can see a leak.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sim_peer import GB, NG, MakeNetwork, SimNode, federation_template, submit_note
from sqlalchemy import select

from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import forms_pb2 as fpb
from exchange._proto.mlax.v1 import statistics_pb2 as spb
from exchange.encoding import now_ms
from exchange.envelope import MessageType
from exchange.errors import ConflictError, PolicyError
from exchange.ledger_entry import LedgerEntry
from exchange.stats import release as rel
from exchange.stats.facts import CaseFact
from exchange.stats.tables import TABLES, TABLES_BY_NAME
from node.config import CasesSection, StatisticsSection
from node.peers.client import DeliverAnswer
from node.services.cases import policy_of
from node.services.messages import Officer
from node.services.stats import (
    StatsDesk,
    case_fact,
    case_facts,
    form_category,
    measurement,
    query_facts,
    release_tables,
)
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

SAMPLES = 60_000
FAILURE = 1e-9
THRESHOLD = 11
PEERS = ("FR-OCRTEH", "NG-NAPTIP")
TARGET = TABLES_BY_NAME["cases_by_peer"]
CELL = ("mla", "sent", "FR-OCRTEH")
SUPPRESSED = "suppressed"


def _facts(n: int) -> list[CaseFact]:
    return [CaseFact("mla", "sent", "FR-OCRTEH", "ordinary", "open") for _ in range(n)]


def _released(plan: rel.TablePlan, samples: Sequence[int]) -> Counter[object]:
    """What a reader of the release sees in the target cell, per sample: the node's own
    suppression applied to each noisy value."""
    out: Counter[object] = Counter()
    for v in samples:
        kept = rel.suppressed([plan], {TARGET.name: {CELL: v}}, THRESHOLD)[TARGET.name]
        out[kept.get(CELL, SUPPRESSED)] += 1
    return out


def _bound(count: int, n: int, log_term: float) -> float:
    """Empirical Bernstein: |p - count/n| <= this, except with the probability in log_term."""
    p = count / n
    variance = p * (1 - p) * n / (n - 1)
    return math.sqrt(2 * variance * log_term / n) + 7 * log_term / (3 * (n - 1))


def _violations(a: Counter[object], b: Counter[object], epsilon: float) -> list[object]:
    """Buckets where P_a exceeds e^epsilon P_b beyond what sampling error explains."""
    buckets = set(a) | set(b)
    # Union bound over every bucket, both datasets and both tails.
    log_term = math.log(4 * len(buckets) / FAILURE)
    n_a, n_b = sum(a.values()), sum(b.values())
    bad = []
    for bucket in buckets:
        low_a = a[bucket] / n_a - _bound(a[bucket], n_a, log_term)
        high_b = b[bucket] / n_b + _bound(b[bucket], n_b, log_term)
        if low_a > math.exp(epsilon) * high_b:
            bad.append(bucket)
    return bad


@pytest.fixture(scope="module")
def attack() -> tuple[float, Counter[object], Counter[object]]:
    """The target table's epsilon as OpenDP states it, and what a reader sees of the
    target cell over many releases without the case (11 cases) and with it (12)."""
    # One epsilon per table, so each table's epsilon is 1 and a leak is easy to see.
    cfg = StatisticsSection(epsilon_per_release=float(len(TABLES)), threshold=THRESHOLD)
    plans, _ = release_tables(TABLES, _facts(11), PEERS, cfg)
    # Composition: the tables' epsilons, each OpenDP's own answer, add up to the release's.
    assert math.isclose(math.fsum(p.epsilon for p in plans), len(TABLES), rel_tol=1e-9)
    plan = next(p for p in plans if p.table is TARGET)
    m = measurement(plan.scale)  # the measurement release_tables draws with
    assert m.map(plan.sensitivity) == pytest.approx(plan.epsilon)
    without = _released(plan, m([11] * SAMPLES))
    with_case = _released(plan, m([12] * SAMPLES))
    return plan.epsilon, without, with_case


def test_a_differencing_attack_learns_no_more_than_epsilon(
    attack: tuple[float, Counter[object], Counter[object]],
) -> None:
    epsilon, without, with_case = attack
    assert epsilon == pytest.approx(1.0)
    assert _violations(with_case, without, epsilon) == []
    assert _violations(without, with_case, epsilon) == []
    # The suppressed bucket is among those checked: the threshold sits at the true count.
    assert without[SUPPRESSED] > 0
    assert with_case[SUPPRESSED] > 0


def test_the_attack_check_sees_a_leak_beyond_the_stated_epsilon(
    attack: tuple[float, Counter[object], Counter[object]],
) -> None:
    epsilon, without, with_case = attack
    # Claimed at a third of what the noise gives, the same samples show a leak.
    assert _violations(with_case, without, epsilon / 3)


# -- the desk: budget, four-eyes, ledger ---------------------------------------------


@pytest.fixture
def node(tmp_path: Path) -> Iterator[SimNode]:
    sim = SimNode(federation_template(), GB, tmp_path)
    yield sim
    sim.close()


PERIOD = spb.StatsPeriodRequest(start="2025-01-01", end="2025-01-31")
ALICE, SAM = Officer("alice", "officer"), Officer("sam", "supervisor")


def _certificate() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sam")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def _approval(
    key: ec.EllipticCurvePrivateKey, view: spb.StatsReleaseView, who: str
) -> spb.StatsApproveRequest:
    at = now_ms()
    rid, digest = view.summary.release_id, bytes(view.summary.digest)
    signature = key.sign(rel.approval_message(rid, digest, who, at), ec.ECDSA(hashes.SHA256()))
    return spb.StatsApproveRequest(release_id=rid, at=at, digest=digest, signature=signature)


def _stats_ledger(sim: SimNode) -> list[tuple[str, dict[str, object]]]:
    with sim.db.read() as s:
        rows = s.execute(
            select(LedgerEntryRow.kind, LedgerEntryRow.entry).order_by(LedgerEntryRow.idx)
        ).all()
    return [(k, json.loads(e)) for k, e in rows if k.startswith("stats.")]


def test_the_accountant_refuses_the_release_that_would_exceed_the_budget(node: SimNode) -> None:
    desk = StatsDesk(node.core, StatisticsSection(1.0, 1.5), CasesSection())
    preview = desk.preview(PERIOD)
    assert [(b.year, b.spent, b.budget) for b in preview.budget] == [(2025, 1.0, 1.5)]
    first = desk.draft(ALICE, PERIOD)
    assert first.summary.state == "draft"
    assert first.summary.epsilon == pytest.approx(1.0)
    with pytest.raises(rel.BudgetExceededError) as refused:
        desk.draft(ALICE, PERIOD)
    assert "over its budget of 1.5 by 0.5" in str(refused.value)
    # The refusal changed nothing: one release, one year's spending, one ledger entry.
    with node.db.read() as s:
        assert len(s.scalars(select(StatsReleaseRow)).all()) == 1
        assert s.get(StatsBudgetRow, 2025).spent == pytest.approx(1.0)  # type: ignore[union-attr]
    assert [k for k, _ in _stats_ledger(node)] == ["stats.release_drafted"]
    # A period that touches 2024 too is charged to both years; 2025 refuses it.
    with pytest.raises(rel.BudgetExceededError, match="2025's spending"):
        desk.draft(ALICE, spb.StatsPeriodRequest(start="2024-12-01", end="2025-01-31"))


def test_a_supervisor_other_than_the_drafter_approves_with_a_signature(node: SimNode) -> None:
    desk = StatsDesk(node.core, StatisticsSection(), CasesSection())
    key, cert = _certificate()
    draft = desk.draft(SAM, PERIOD)
    with pytest.raises(PolicyError, match="Four-eyes: sam drafted"):
        desk.approve(SAM, _approval(key, draft, "sam"), cert)
    draft = desk.draft(ALICE, PERIOD)
    forged = _approval(key, draft, "someone-else")
    with pytest.raises(PolicyError, match="does not verify"):
        desk.approve(SAM, forged, cert)
    final = desk.approve(SAM, _approval(key, draft, "sam"), cert)
    assert final.summary.state == "final"
    assert final.summary.approved_by == "sam"
    with pytest.raises(ConflictError, match="already final"):
        desk.approve(SAM, _approval(key, draft, "sam"), cert)
    entries = _stats_ledger(node)
    assert [k for k, _ in entries] == [
        "stats.release_drafted",
        "stats.release_drafted",
        "stats.release_approved",
    ]
    drafted = entries[1][1]
    assert drafted["epsilon"] == repr(1.0) or float(str(drafted["epsilon"])) == pytest.approx(1.0)
    # The ledger names the release and its epsilon, never a cell's value.
    assert set(drafted) == {
        "kind",
        "at",
        "release_id",
        "officer",
        "period_start",
        "period_end",
        "epsilon",
        "digest",
    }
    doc = json.loads(final.document)
    assert rel.digest(doc) == bytes(final.summary.digest)
    assert doc["privacy"]["threshold"] == 11


def _release_recipients(node: SimNode) -> list[str]:
    with node.db.read() as s:
        return sorted(
            s.scalars(
                select(MessageRow.peer).where(
                    MessageRow.direction == "out",
                    MessageRow.message_type == MessageType.STATISTICS_RELEASE.value,
                )
            )
        )


def test_an_approved_release_goes_to_the_coordinators_the_directory_names(
    node: SimNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = StatsDesk(node.core, StatisticsSection(), CasesSection())
    key, cert = _certificate()
    desk.approve(SAM, _approval(key, desk.draft(ALICE, PERIOD), "sam"), cert)
    assert _release_recipients(node) == [NG]  # no coordinator: every peer
    # The directory names this agency its only coordinator: its release goes nowhere.
    directory = node.core.directory.current()
    named = replace(directory, statistics_coordinators=(GB,))
    monkeypatch.setattr(node.core.directory, "current", lambda: named)
    desk.approve(SAM, _approval(key, desk.draft(ALICE, PERIOD), "sam"), cert)
    assert _release_recipients(node) == [NG]


# -- facts from stored cases ---------------------------------------------------------

DAY = 86_400_000


def _case(
    role: str, state: str, steps: list[tuple[str, str, int, str]]
) -> tuple[CaseRow, list[CaseEventRow]]:
    row = CaseRow(
        id=1,
        case_ref="GB-NCA-2025-00001",
        case_type="mla",
        role=role,
        requesting="GB-NCA" if role == "requesting" else "FR-OCRTEH",
        requested="FR-OCRTEH" if role == "requesting" else "GB-NCA",
        peer="FR-OCRTEH",
        urgency="ordinary",
        state=state,
        opened_at=0,
    )
    events = [
        CaseEventRow(case_id=1, seq=i + 1, action=a, party=p, at=at, state_after=after)
        for i, (a, p, at, after) in enumerate(steps)
    ]
    return row, events


def test_a_case_becomes_one_fact_with_its_days_clocks_and_outcome() -> None:
    p = policy_of(CasesSection(ordinary_ack_seconds=10 * 86400))
    row, events = _case(
        "requesting",
        "closed",
        [
            ("submit", "requesting", 0, "submitted"),
            ("acknowledge", "requested", 12 * DAY, "acknowledged"),  # 2 days late
            ("accept", "requested", 13 * DAY, "accepted"),
            ("start_execution", "requested", 14 * DAY, "in_execution"),
            ("report_executed", "requested", 20 * DAY + 1, "executed"),
            ("close", "requesting", 21 * DAY, "closed"),
        ],
    )
    fact = case_fact(row, events, p, now=30 * DAY)
    assert fact == CaseFact(
        case_type="mla",
        direction="sent",
        peer="FR-OCRTEH",
        urgency="ordinary",
        outcome="executed",  # closed after execution counts as executed
        ack_days=12,
        execution_days=21,  # whole days, rounded up
        ack_on_time=False,
        response_on_time=True,
    )


def test_an_unanswered_received_case_is_late_only_once_its_clock_ran_out() -> None:
    p = policy_of(CasesSection(ordinary_ack_seconds=10 * 86400))
    row, events = _case("requested", "submitted", [("submit", "requesting", 0, "submitted")])
    early, late = case_fact(row, events, p, now=DAY), case_fact(row, events, p, now=11 * DAY)
    assert early is not None
    assert late is not None
    assert (early.direction, early.outcome, early.ack_on_time) == ("received", "open", None)
    assert late.ack_on_time is False
    draft, _ = _case("requesting", "draft", [])
    assert case_fact(draft, [], p, now=DAY) is None


def test_a_case_counts_under_the_first_offence_category_its_sealed_form_records(
    node: SimNode,
) -> None:
    form = fpb.CaseForm(
        mla=fpb.MlaRequest(
            offences=[
                fpb.Offence(description="fraud"),  # no category: the next one decides
                fpb.Offence(
                    description="exploitation",
                    category=fpb.OFFENCE_CATEGORY_TRAFFICKING_SEXUAL_EXPLOITATION,
                ),
                fpb.Offence(description="labour", category=fpb.OFFENCE_CATEGORY_FORCED_LABOUR),
            ]
        )
    )
    row, _ = _case("requesting", "submitted", [])
    open_form = node.core.open_from_self
    row.form_sealed = node.core.seal_to_self(form.SerializeToString())
    assert form_category(row, open_form) == "trafficking_sexual_exploitation"
    # A form with no category, a purged one and one this node cannot open: not recorded.
    row.form_sealed = node.core.seal_to_self(
        fpb.CaseForm(victim_id=fpb.VictimIdRequest()).SerializeToString()
    )
    assert form_category(row, open_form) == "not_recorded"
    row.form_sealed = b""
    assert form_category(row, open_form) == "not_recorded"
    row.form_sealed = b"not an envelope"
    assert form_category(row, open_form) == "not_recorded"


def test_each_person_asked_about_is_one_fact_with_the_best_answer(node: SimNode) -> None:
    at = rel.Period.parse("2025-01-02", "2025-01-02").start_ms
    answers = [
        (0, "FR-OCRTEH", "no-hit", ""),
        (0, "NG-NAPTIP", "hit", "possible"),
        (1, "FR-OCRTEH", "hit", "possible"),
        (1, "NG-NAPTIP", "hit", "strong"),
        (2, "FR-OCRTEH", "unavailable", ""),
    ]
    with node.db.write() as s:
        ledger.append(
            s,
            LedgerEntry.of(
                "match.query", at, query_id="q1", officer="a", queries=4, unmatchable=1, peers="x"
            ),
        )
        for query, peer, result, band in answers:
            ledger.append(
                s,
                LedgerEntry.of(
                    "match.answer",
                    at,
                    query_id="q1",
                    peer=peer,
                    query=query,
                    result=result,
                    band=band,
                ),
            )
    with node.db.read() as s:
        facts = query_facts(s, rel.Period.parse("2025-01-01", "2025-01-31"))
        outside = query_facts(s, rel.Period.parse("2025-02-01", "2025-02-28"))
    assert sorted(f.result for f in facts) == [
        "hit_possible",
        "hit_strong",
        "not_answered",
        "unmatchable",
    ]
    assert outside == []


def _store_case(
    sim: SimNode,
    n: int,
    case_type: str,
    form: fpb.CaseForm,
    steps: list[tuple[str, str, str]],
    sealed_steps: dict[int, bytes],
) -> None:
    """A case as the node keeps it: its form and the steps' envelopes sealed to itself."""
    at = rel.Period.parse("2025-01-02", "2025-01-02").start_ms
    with sim.db.write() as s:
        row = CaseRow(
            case_ref=f"GB-NCA-2025-{n:05d}",
            case_type=case_type,
            role="requesting",
            requesting=GB,
            requested=NG,
            peer=NG,
            urgency="ordinary",
            state=steps[-1][2],
            opened_at=at,
            updated_at=at,
            form_sealed=sim.core.seal_to_self(form.SerializeToString()),
            form_digest=bytes(32),
        )
        s.add(row)
        s.flush()
        for i, (action, party, after) in enumerate(steps):
            mid = bytes([n, i]) * 8
            s.add(
                CaseEventRow(
                    case_id=row.id,
                    seq=i + 1,
                    action=action,
                    party=party,
                    agency=GB,
                    at=at + i,
                    message_id=mid,
                    state_after=after,
                )
            )
            if i in sealed_steps:
                body = cpb.CaseTransitionBody(
                    case_ref=row.case_ref,
                    seq=i + 1,
                    at=at + i,
                    details=fpb.TransitionDetails.FromString(sealed_steps[i]),
                )
                sealed = sim.core.seal_to_self(body.SerializeToString(deterministic=True))
                s.add(
                    MessageRow(
                        message_id=mid,
                        direction="in",
                        peer=NG,
                        message_type=MessageType.CASE_TRANSITION.value,
                        created_at=at,
                        expires_at=at + DAY,
                        envelope_digest=bytes(32),
                        state="received",
                        content=MessageContentRow(envelope=b"x", self_copy=sealed),
                    )
                )


def test_refusal_grounds_and_the_person_sought_are_read_from_what_the_node_keeps_sealed(
    node: SimNode,
) -> None:
    refusal = fpb.TransitionDetails(
        refuse=fpb.Refusal(
            grounds=[fpb.REFUSAL_GROUND_NO_DUAL_CRIMINALITY, fpb.REFUSAL_GROUND_OTHER],
            explanation="Not an offence here.",
        )
    )
    submitted, acked = (
        ("submit", "requesting", "submitted"),
        ("acknowledge", "requested", "acknowledged"),
    )
    _store_case(
        node,
        1,
        "mla",
        fpb.CaseForm(mla=fpb.MlaRequest()),
        [submitted, acked, ("refuse", "requested", "refused")],
        {2: refusal.SerializeToString()},
    )
    # Refused too, but the step's envelope was purged: the ground is not recorded.
    _store_case(
        node,
        2,
        "extradition",
        fpb.CaseForm(extradition=fpb.ExtraditionRequest()),
        [submitted, acked, ("refuse", "requested", "refused")],
        {},
    )
    person = fpb.VictimSought(
        given_name="Ana", family_name="Pop", sex="F", date_of_birth="2010-05-01", nationality="NGA"
    )
    _store_case(
        node,
        3,
        "victim-id",
        fpb.CaseForm(victim_id=fpb.VictimIdRequest(person=person)),
        [submitted, ("report_executed", "requested", "executed")],
        {},
    )
    period = rel.Period.parse("2025-01-01", "2025-03-31")
    with node.db.read() as s:
        facts = case_facts(
            s, period, policy_of(CasesSection()), now_ms(), node.core.open_from_self, ("GB", "NG")
        )
    by_type = {f.case_type: f for f in facts}
    assert by_type["mla"].refusal_ground == "no_dual_criminality"
    assert by_type["extradition"].refusal_ground == "not_recorded"
    follow_up = by_type["victim-id"]
    # 14 on the period's last day; NGA is the directory's NG. Nothing else of the person.
    assert (follow_up.sex, follow_up.age_band, follow_up.nationality) == ("female", "9--17", "NG")
    assert (by_type["mla"].sex, by_type["mla"].nationality) == ("not_recorded", "not_recorded")
    # Without the node's key nothing is read: every case counts as not recorded.
    with node.db.read() as s:
        blind = case_facts(s, period, policy_of(CasesSection()), now_ms())
    assert {f.refusal_ground for f in blind} == {"not_recorded"}
    assert {f.age_band for f in blind} == {"not_recorded"}


# -- a peer's release on arrival (security review F4) --------------------------------


def _send(sender: SimNode, to: str, body: bytes) -> bytes:
    """`sender` seals `body` to `to` as a statistics release; the envelope's bytes."""
    row, _ = sender.core.outbound("ng-officer", to, body, MessageType.STATISTICS_RELEASE)
    return bytes(row.content.envelope)


def _received(node: SimNode) -> list[tuple[str, str]]:
    with node.db.read() as s:
        return [(r.agency, r.release_id) for r in s.scalars(select(StatsReceivedRow)).all()]


def _release_of(agency: str, release_id: str) -> bytes:
    plans = rel.plan((TARGET,), 1.0, 90)
    params = rel.Parameters(agency, rel.Period.parse("2025-01-01", "2025-01-31"), 1.0, 11, 90, "x")
    doc = rel.document(release_id, params, plans, {TARGET.name: {}}, PEERS)
    return rel.canonical(doc)


def test_a_release_that_cannot_be_read_or_is_not_for_this_node_is_refused_alone(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = sim_network()
    gb, ng = network[GB], network[NG]
    StatsDesk(gb.core, StatisticsSection(), CasesSection())
    nested = b"[" * 20_000 + b"]" * 20_000
    deep_key = _release_of(NG, "r-deep")[:-1] + b',"x":' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    submit_note(ng, GB, "kept")
    with ng.db.read() as s:
        note_env = bytes(
            s.scalars(select(MessageRow).where(MessageRow.direction == "out"))
            .one()
            .content.envelope
        )
    batch = [
        _send(ng, GB, nested),
        _send(ng, GB, deep_key),
        note_env,
        _send(ng, GB, _release_of(NG, "r-1")),
    ]
    answers: list[DeliverAnswer] = []
    ng.peers.deliver_batch(GB, batch, 10.0, answers.extend)
    codes = [a.code for a in answers]
    assert codes[:2] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    assert "JSON document" in answers[0].detail
    assert codes[2:] == [None, None]  # the note and the good release in the same batch
    assert _received(gb) == [(NG, "r-1")]
    # A newer release of the same period replaces the one held.
    ng.peers.deliver_batch(GB, [_send(ng, GB, _release_of(NG, "r-2"))], 10.0, answers.extend)
    assert answers[-1].code is None
    assert _received(gb) == [(NG, "r-2")]
    # The directory names a coordinator other than GB: GB takes no release.
    named = replace(gb.core.directory.current(), statistics_coordinators=(NG,))
    monkeypatch.setattr(gb.core.directory, "current", lambda: named)
    ng.peers.deliver_batch(GB, [_send(ng, GB, _release_of(NG, "r-3"))], 10.0, answers.extend)
    assert answers[-1].code == grpc.StatusCode.PERMISSION_DENIED
    assert "not a statistics coordinator" in answers[-1].detail
    assert _received(gb) == [(NG, "r-2")]
