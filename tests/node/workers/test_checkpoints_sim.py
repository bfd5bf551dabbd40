"""The checkpoint worker and delivery proofs against an in-process peer
(tests/node/sim_peer.py): NG signs checkpoints of its ledger and GB, as its witness,
cosigns them through NG's `SimPeer`; GB proves a delivery from NG's ledger."""

from __future__ import annotations

import grpc
import structlog
from sim_peer import GB, NG, MakeNetwork, SimNode, submit_note, wait_for

from exchange._proto.mlax.v1 import officer_pb2 as opb
from node.config import DeliverySection
from node.services.delivery_proof import delivery_proof
from node.services.messages import DELIVERED, STATE_TO_WIRE
from node.workers.checkpoints import Checkpointer

DELIVERY = DeliverySection(poll_interval_seconds=0.05, rpc_timeout_seconds=3.0)


def _checkpointer(node: SimNode, interval: float = 60.0, witness: float = 60.0) -> Checkpointer:
    return Checkpointer(
        node.core,
        node.store,
        node.peers,
        interval=interval,
        every_entries=1000,
        witness_interval=witness,
        timeout=3.0,
    )


def _delivered(net: dict[str, SimNode], subject: str) -> str:
    """A note from GB, delivered to NG (GB's worker keeps running)."""
    gb = net[GB]
    message_id = submit_note(gb, NG, subject)
    gb.start()
    request = opb.GetMessageRequest(message_id=message_id)
    wait_for(lambda: gb.core.get(gb.officer, request).summary.state == STATE_TO_WIRE[DELIVERED])
    return message_id


def test_the_peer_cosigns_a_checkpoint_that_proves_a_delivery(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    message_id = _delivered(net, "Proof please")
    proof = delivery_proof(gb.core, gb.peers, message_id, 3.0)
    assert not proof.verified  # NG has not signed a checkpoint with the entry yet
    assert "NOT_FOUND" in proof.problem or "FAILED_PRECONDITION" in proof.problem, proof.problem

    checkpoints = _checkpointer(ng)
    size = checkpoints.checkpoint_now()
    assert size is not None
    checkpoints.witness_round()
    assert ng.store.last_cosigned_size(GB) == size
    assert len(ng.store.cosignatures(size)) == 1
    assert ng.peers.calls_to(GB, "AddCheckpoint") == 1
    checkpoints.witness_round()  # already cosigned: not asked again
    assert ng.peers.calls_to(GB, "AddCheckpoint") == 1

    proof = delivery_proof(gb.core, gb.peers, message_id, 3.0)
    assert proof.verified, proof.problem
    assert proof.proof.tree_size == size
    assert len(proof.proof.checkpoint.cosignatures) == 1


def test_the_checkpoint_worker_signs_and_gathers_cosignatures_on_its_timer(
    sim_network: MakeNetwork,
) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    _delivered(net, "Timer")
    checkpoints = _checkpointer(ng, interval=0.05, witness=0.1)
    checkpoints.start()
    try:
        wait_for(lambda: ng.store.last_cosigned_size(GB) > 0)
        first = ng.store.latest_checkpoint()
        assert first is not None
    finally:
        checkpoints.stop()
    # A log that grows gets a newer checkpoint, cosigned with a consistency proof.
    submit_note(gb, NG, "Grow")
    wait_for(lambda: ng.store.size() > first.size)
    checkpoints = _checkpointer(ng, interval=0.05, witness=0.1)
    checkpoints.start()
    try:
        wait_for(lambda: ng.store.last_cosigned_size(GB) > first.size)
    finally:
        checkpoints.stop()


def test_a_witness_that_is_down_is_logged_and_asked_again(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    ng = net[NG]
    ng.peers.down.add(GB)
    checkpoints = _checkpointer(ng)
    size = checkpoints.checkpoint_now()
    assert size is not None
    with structlog.testing.capture_logs() as logs:
        checkpoints.witness_round()
    [line] = [e for e in logs if e["event"] == "witness_unavailable"]
    assert (line["witness"], line["reason"]) == (GB, grpc.StatusCode.UNAVAILABLE.name)
    assert ng.store.last_cosigned_size(GB) == 0
    ng.peers.down.clear()
    checkpoints.witness_round()
    assert ng.store.last_cosigned_size(GB) == size
