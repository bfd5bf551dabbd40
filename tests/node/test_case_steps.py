"""Two nodes' copies of a case stay one history, whatever the network and officers do.

A stateful property test (hypothesis `RuleBasedStateMachine`) drives two nodes in-process
through the real step code: each node is a real `NodeCore` with its `CaseDesk` and
`DeliveryWorker` over its own SQLite database, and the network between them is simulated,
so it can lose, duplicate, reorder and delay requests and receipts, and either node can
"restart" (its in-flight calls vanish; only its database survives). Officers on both
sides act at any time, including withdraw and close. The rule from
docs/protocol-casework.md ("Steps in flight") must hold:

- an action the node offers (`allowed_actions`) is accepted at once, never refused
  because an earlier step of ours is still travelling;
- once the network is quiet, both nodes hold the same history with the same head
  digest, nothing of ours is still queued, and no delivery is retrying.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sim_peer import GB, NG, federation_template
from sqlalchemy import select

from exchange import forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.case import Action
from exchange.casework import ACTION_TO_WIRE
from exchange.envelope import Limits
from exchange.errors import MlaxError
from keys.identity import AgencyIdentity
from node.config import CasesSection, DeliverySection
from node.services.cases import CaseDesk
from node.services.messages import FAILED, HELD, OUT, QUEUED, RETRYING, NodeCore, Officer
from node.services.trust import TrustedDirectory
from node.storage.db import Database
from node.storage.models import CaseEventRow, CasePendingRow, CaseRow, MessageRow
from node.workers.delivery import DeliveryWorker, _Claim, _Outcome

REQUESTING, REQUESTED = GB, NG
FORM_FILE = Path(__file__).resolve().parents[2] / "deploy" / "forms" / "mla-request.toml"

DETAILS: dict[Action, dict[str, object]] = {
    Action.ACKNOWLEDGE: {"reference": "NAPTIP/MLA/2026/0077"},
    Action.REQUEST_INFO: {"questions": ["Which branch holds the account?"]},
    Action.PROVIDE_INFO: {"answers": "The Ring Road branch."},
    Action.ACCEPT: {},
    Action.REFUSE: {"grounds": ["no-dual-criminality"], "explanation": "Not an offence here."},
    Action.START_EXECUTION: {"executing_authority": "NAPTIP Benin Zonal Command"},
    Action.REPORT_PARTIAL: {"summary": "First statements.", "assistance_executed": []},
    Action.REPORT_EXECUTED: {"summary": "All statements.", "assistance_executed": []},
    Action.WITHDRAW: {"reason": "The suspect was arrested."},
    Action.CLOSE: {"outcome": "Done."},
}
# Time must not decide what happens (hypothesis replays each example): every message
# that is not settled is due again at once (no backoff, no lease), and every message is
# past its give-up time from the start, so a node would give up on steps the peer applied
# unless the step rule keeps asking.
DELIVERY = DeliverySection(
    give_up_after_seconds=-1.0,
    initial_backoff_seconds=0.0,
    max_backoff_seconds=0.0,
    lease_seconds=0.0,
    rpc_timeout_seconds=1.0,
)
CASES = CasesSection(approval_required="none")
HAPPY_PATH = (
    (REQUESTING, Action.SUBMIT),
    (REQUESTED, Action.ACKNOWLEDGE),
    (REQUESTED, Action.ACCEPT),
    (REQUESTED, Action.START_EXECUTION),
)


class CaseNode:
    """One agency's node in-process: the real core, case desk and delivery worker."""

    def __init__(self, identity: AgencyIdentity, path: Path) -> None:
        self.db = Database(f"sqlite:///{path}")
        self.core = NodeCore(
            identity, self.db, TrustedDirectory(self.db), Limits(), 30 * 24 * 3600 * 1000
        )
        self.desk = CaseDesk(self.core, CASES)
        self.worker = DeliveryWorker(self.core, None, DELIVERY)  # type: ignore[arg-type]
        self.agency = identity.agency_id
        self.officer = Officer(name=f"{self.agency.lower()}-officer", role="officer")

    def close(self) -> None:
        self.db.close()


@dataclass
class Call:
    """A Deliver on the wire: the request, and once the peer answered, its answer."""

    sender: str
    claim: _Claim
    generation: int
    outcome: _Outcome | None = None


@dataclass
class World:
    nodes: dict[str, CaseNode]
    generation: dict[str, int] = field(default_factory=lambda: {REQUESTING: 0, REQUESTED: 0})
    wire: list[Call] = field(default_factory=list)
    case_ref: str = ""


def _outcome(call: Call, receiver: CaseNode) -> _Outcome:
    try:
        receipt = receiver.core.receive(call.claim.envelope, call.sender)
        return _Outcome(call.claim, receipt.to_bytes(), None, "", 0.0)
    except MlaxError as e:
        return _Outcome(call.claim, None, grpc.StatusCode[e.status], e.message, 0.0)


def _other(agency: str) -> str:
    return REQUESTED if agency == REQUESTING else REQUESTING


class CaseSteps(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # On tmpfs where there is one: every commit is fsynced (synchronous=FULL).
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(prefix="mlax-case-steps-", dir=shm))
        nodes = {}
        made = federation_template()
        for agency, identity in made.identities.items():
            path = self.dir / f"{agency}.db"
            shutil.copy(made.databases[agency], path)
            nodes[agency] = CaseNode(identity, path)
        self.world = World(nodes)
        form = forms.form_from_mapping(
            forms.CaseType.MLA,
            tomllib.loads(FORM_FILE.read_text(encoding="utf-8")),
            now_ms=int(time.time() * 1000),
        )
        requesting = nodes[REQUESTING]
        self.world.case_ref = requesting.desk.create(
            requesting.officer, cpb.CreateCaseRequest(form=form)
        )

    def teardown(self) -> None:
        try:
            self._settle()
            self._check_one_history()
        finally:
            for node in self.world.nodes.values():
                node.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- officers -------------------------------------------------------------------------

    @initialize(stage=st.integers(0, len(HAPPY_PATH)))
    def start_at(self, stage: int) -> None:
        """Begin from a case already some way along its usual path, held by both."""
        for side, action in HAPPY_PATH[:stage]:
            node = self.world.nodes[side]
            node.desk.act(node.officer, self._request(action, 0))
            self._settle()

    def _request(self, action: Action, expected_seq: int) -> cpb.CaseActionRequest:
        return cpb.CaseActionRequest(
            case_ref=self.world.case_ref,
            action=ACTION_TO_WIRE[action],
            details=(
                forms.details_from_mapping(action, DETAILS[action]) if action in DETAILS else None
            ),
            expected_seq=expected_seq,
        )

    @rule(
        side=st.sampled_from((REQUESTING, REQUESTED)),
        data=st.data(),
        pin=st.booleans(),
    )
    def act(self, side: str, data: st.DataObject, pin: bool) -> None:
        """An officer acts: mostly what the node offers, sometimes anything at all."""
        node = self.world.nodes[side]
        summary = self._summary(node)
        if summary is None:
            return  # the requested node does not know the case yet
        offers = [Action(a) for a in summary.allowed_actions]
        # Mostly steps that keep the case going; withdrawing or closing ends the run's
        # interest, and anything at all (offered or not) must be answered cleanly.
        going = [a for a in offers if a not in (Action.WITHDRAW, Action.CLOSE)]
        pick = data.draw(st.integers(0, 9))
        if pick < 7 and not going:
            return  # this officer has nothing to move the case on with; wait
        choices = going if pick < 7 else offers if offers and pick < 9 else list(Action)
        action = data.draw(st.sampled_from(choices))
        offered = action.value in summary.allowed_actions
        req = self._request(action, summary.local_seq if pin else 0)
        try:
            node.desk.act(node.officer, req)
        except MlaxError as e:
            # Refusing an offered action is allowed only if the peer's step arrived
            # between our look and our act (it cannot here: nothing runs in between).
            assert not offered, f"{side} was offered {action.value} but refused: {e.message}"  # noqa: PT017
            return
        assert offered, f"{side} was not offered {action.value}, yet it was accepted"
        event(f"{side} {action.value}")

    @rule(data=st.data())
    def both_act(self, data: st.DataObject) -> None:
        """Officers of both agencies act before either hears of the other's step."""
        for side in (REQUESTED, REQUESTING):
            summary = self._summary(self.world.nodes[side])
            if summary is None or not summary.allowed_actions:
                continue
            action = Action(data.draw(st.sampled_from(list(summary.allowed_actions))))
            node = self.world.nodes[side]
            node.desk.act(node.officer, self._request(action, 0))
            event(f"both acted: {side} {action.value}")

    # -- the network ----------------------------------------------------------------------

    def dispatch(self, side: str) -> None:
        """The delivery worker claims what is due and puts it on the wire."""
        node = self.world.nodes[side]
        for claim in node.worker._claim(_other(side), 16):  # counts it in flight
            self.world.wire.append(Call(side, claim, self.world.generation[side]))

    @rule(data=st.data())
    def network(self, data: st.DataObject) -> None:
        """Both workers send what is due; then one thing happens on the wire.

        A request reaches the peer (in any order, possibly twice) or is lost; an answer
        reaches its sender (in any order) or is lost on the way.
        """
        for _ in range(data.draw(st.integers(1, 6))):
            self._one_network_event(data)

    def _one_network_event(self, data: st.DataObject) -> None:
        for side in (REQUESTING, REQUESTED):
            self.dispatch(side)
        if not self.world.wire:
            return
        call = data.draw(st.sampled_from(self.world.wire))
        if call.outcome is None:
            receiver = self.world.nodes[_other(call.sender)]
            if data.draw(st.integers(0, 5)) == 0:
                event("a request was lost")
                call.outcome = _Outcome(call.claim, None, grpc.StatusCode.UNAVAILABLE, "", 0.0)
                return
            call.outcome = _outcome(call, receiver)
            if call.outcome.code is not None:
                event(f"the peer answered {call.outcome.code.name}")
            if data.draw(st.integers(0, 3)) == 0:
                again = _outcome(call, receiver)
                if call.outcome.receipt is not None:
                    assert again.receipt == call.outcome.receipt, "a re-delivery got a new receipt"
            return
        self.world.wire.remove(call)
        if self.world.generation[call.sender] != call.generation:
            return  # the sender restarted: nobody is waiting for this answer
        outcome = call.outcome
        if data.draw(st.integers(0, 3)) == 0:
            event("an answer was lost" + (" (a receipt)" if outcome.receipt else ""))
            outcome = _Outcome(call.claim, None, grpc.StatusCode.DEADLINE_EXCEEDED, "", 0.0)
        self.world.nodes[call.sender].worker._record([outcome])

    @rule(side=st.sampled_from((REQUESTING, REQUESTED)), now=st.integers(0, 3))
    def restart(self, side: str, now: int) -> None:
        """Now and then a node's process dies and starts again: only its database survives."""
        if now:
            return
        event("a node restarted")
        node = self.world.nodes[side]
        node.close()
        self.world.generation[side] += 1
        self.world.nodes[side] = CaseNode(node.core.identity, self.dir / f"{side}.db")

    @invariant()
    def histories_never_fork(self) -> None:
        """At every moment, one copy's applied history is a prefix of the other's."""
        a, b = (self._history(self.world.nodes[x]) for x in (REQUESTING, REQUESTED))
        shorter, longer = sorted((a, b), key=len)
        assert longer[: len(shorter)] == shorter, f"histories forked: {a} vs {b}"

    # -- helpers --------------------------------------------------------------------------

    def _summary(self, node: CaseNode) -> cpb.CaseSummary | None:
        with node.db.read() as s:
            row = s.scalars(select(CaseRow).where(CaseRow.case_ref == self.world.case_ref)).first()
            return None if row is None else node.desk.summary(s, row, node.officer)

    def _history(self, node: CaseNode) -> list[tuple[int, str, bytes]]:
        with node.db.read() as s:
            row = s.scalars(select(CaseRow).where(CaseRow.case_ref == self.world.case_ref)).first()
            if row is None:
                return []
            events = s.scalars(
                select(CaseEventRow)
                .where(CaseEventRow.case_id == row.id)
                .order_by(CaseEventRow.seq)
            ).all()
            return [(e.seq, e.action, e.digest) for e in events]

    def _settle(self) -> None:
        """Let the network work, without loss, until nothing is on its way."""
        for _ in range(400):
            for side in (REQUESTING, REQUESTED):
                self.dispatch(side)
            for call in list(self.world.wire):
                if call.outcome is None:
                    call.outcome = _outcome(call, self.world.nodes[_other(call.sender)])
                self.world.wire.remove(call)
                if self.world.generation[call.sender] == call.generation:
                    self.world.nodes[call.sender].worker._record([call.outcome])
            if not self._busy():
                return
        raise AssertionError("deliveries still retrying after the network went quiet")

    def _busy(self) -> bool:
        for node in self.world.nodes.values():
            with node.db.read() as s:
                if s.scalars(select(CasePendingRow.id)).first() is not None:
                    return True
                waiting = s.scalars(
                    select(MessageRow.id).where(
                        MessageRow.direction == OUT,
                        MessageRow.state.in_((QUEUED, RETRYING, HELD)),
                    )
                ).first()
                if waiting is not None:
                    return True
        return False

    def _check_one_history(self) -> None:
        requesting, requested = (self.world.nodes[x] for x in (REQUESTING, REQUESTED))
        ours, theirs = self._summary(requesting), self._summary(requested)
        assert ours is not None
        if theirs is None:
            assert ours.seq == 0, "the requesting node applied a step the peer never got"
            return
        assert (ours.seq, ours.head_digest, ours.state) == (
            theirs.seq,
            theirs.head_digest,
            theirs.state,
        )
        assert self._history(requesting) == self._history(requested)
        for node in (requesting, requested):
            summary = self._summary(node)
            assert summary is not None
            assert not summary.queued_actions
            assert not summary.pending_action
            with node.db.read() as s:
                states = set(
                    s.scalars(select(MessageRow.state).where(MessageRow.direction == OUT)).all()
                )
            assert states <= {"delivered", FAILED}, states


TestTwoNodesKeepOneHistory = CaseSteps.TestCase
TestTwoNodesKeepOneHistory.settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
