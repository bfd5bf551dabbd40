"""A node's own consecutive case steps queue behind the one still travelling.

Two real nodes; the peer is stopped so that a step stays on its way, then started again.
Issue 10's two defects, each shown against live processes:

- withdrawing a draft whose approved submission is still queued must not split the case
  (the withdrawal queues behind the submission and both nodes end withdrawn);
- an officer acting twice (or three times) in a row is never told to act again later:
  the steps queue, leave in order and take effect on both nodes.
"""

from __future__ import annotations

import os
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange import forms
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.case import Action
from exchange.encoding import now_ms
from node.client import NodeCallError, OfficerClient
from node.client.cases import CaseClient
from node.devtools.federation import NodeProcess, build_federation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("case-steps-live")]

GB, NG = "GB-NCA", "NG-NAPTIP"
PASS = b"case-steps-live-passphrase"
OFFICER_PASS = b"case-steps-live-officer"
FORMS = Path(__file__).resolve().parents[2] / "deploy" / "forms"


@dataclass
class Pair:
    nodes: dict[str, NodeProcess]
    credentials: dict[str, dict[str, Path]]
    clients: list[OfficerClient]

    def cases(self, agency: str, role: str = "officer") -> CaseClient:
        client = OfficerClient.from_bundle(self.credentials[agency][role], OFFICER_PASS)
        self.clients.append(client)
        return CaseClient(client)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    env = dict(os.environ, MLAX_KEY_PASSPHRASE=PASS.decode(), MLAX_KDF_PROFILE="test")
    fed = build_federation(
        tmp_path_factory.mktemp("case-steps-live"),
        PASS,
        OFFICER_PASS,
        agencies=((GB, "National Crime Agency"), (NG, "NAPTIP")),
        delivery={"initial_backoff_seconds": 0.2, "max_backoff_seconds": 0.5},
    )
    nodes = {agency: NodeProcess(setup, env) for agency, setup in fed.nodes.items()}
    for node in nodes.values():
        node.start()
    pair = Pair(nodes, {a: s.credentials for a, s in fed.nodes.items()}, [])
    try:
        yield pair
    finally:
        for client in pair.clients:
            client.close()
        for node in nodes.values():
            node.stop()


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except NodeCallError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} within {timeout} s")


def _draft(cases: CaseClient) -> str:
    data = tomllib.loads((FORMS / "mla-request.toml").read_text())
    form = forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms())
    return cases.create(form).summary.case_ref


def _steps(view: cpb.CaseView) -> list[tuple[int, str, bytes]]:
    return [(e.seq, e.action, bytes(e.digest)) for e in view.timeline]


def _settled(a: CaseClient, b: CaseClient, ref: str, state: str) -> Callable[[], bool]:
    def check() -> bool:
        x, y = a.get(ref).summary, b.get(ref).summary
        return (
            x.state == y.state == state
            and not x.queued_actions
            and not y.queued_actions
            and x.head_digest == y.head_digest
        )

    return check


def test_withdrawing_a_draft_whose_approved_submission_is_queued_never_splits_the_case(
    pair: Pair,
) -> None:
    officer, supervisor = pair.cases(GB), pair.cases(GB, "supervisor")
    ref = _draft(officer)
    officer.act(ref, "submit")  # four-eyes: waits for the supervisor
    pair.nodes[NG].stop()
    try:
        supervisor.approve(ref)  # the submission is queued: NG is down
        withdraw = forms.details_from_mapping(Action.WITHDRAW, {"reason": "Arrested at home."})
        view = officer.act(ref, "withdraw", withdraw)
        summary = view.summary
        # Nothing took effect yet: the case is a draft until NG receipts the submission.
        assert summary.state == "draft"
        assert list(summary.queued_actions) == ["submit", "withdraw"]
        assert summary.local_state == "withdrawn"
        assert summary.local_seq == 2
    finally:
        pair.nodes[NG].start()
    responder = pair.cases(NG)
    _wait(_settled(officer, responder, ref, "withdrawn"), 60, "both nodes did not end withdrawn")
    ours, theirs = officer.get(ref), responder.get(ref)
    assert _steps(ours) == _steps(theirs)
    assert [s[1] for s in _steps(ours)] == ["submit", "withdraw"]
    assert not ours.summary.last_error


def test_an_officer_acting_several_times_in_a_row_is_never_told_to_act_again(
    pair: Pair,
) -> None:
    officer, supervisor = pair.cases(GB), pair.cases(GB, "supervisor")
    ref = _draft(officer)
    officer.act(ref, "submit")
    supervisor.approve(ref)
    responder = pair.cases(NG)
    _wait(_settled(officer, responder, ref, "submitted"), 60, "the submission did not arrive")

    pair.nodes[GB].stop()  # NG's steps cannot be receipted: each stays on its way
    try:
        ack = forms.details_from_mapping(Action.ACKNOWLEDGE, {"reference": "NG/2026/1"})
        start = forms.details_from_mapping(
            Action.START_EXECUTION, {"executing_authority": "NAPTIP Benin Zonal Command"}
        )
        responder.act(ref, "acknowledge", ack)
        responder.act(ref, "accept")
        summary = responder.act(ref, "start-execution", start).summary
        assert summary.state == "submitted"
        assert list(summary.queued_actions) == ["acknowledge", "accept", "start_execution"]
        assert summary.local_state == "in_execution"
        # What the officer may do next follows the queued steps.
        assert "report_executed" in summary.allowed_actions
    finally:
        pair.nodes[GB].start()
    _wait(_settled(officer, responder, ref, "in_execution"), 60, "the steps did not all arrive")
    ours, theirs = officer.get(ref), responder.get(ref)
    assert _steps(ours) == _steps(theirs)
    assert [s[1] for s in _steps(theirs)] == ["submit", "acknowledge", "accept", "start_execution"]
