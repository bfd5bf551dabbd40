"""The delivery worker against an in-process peer (tests/node/sim_peer.py): the real
worker thread on GB's node sends through a `SimPeer` to NG's real node, whose federation
servicer stores the envelope and signs the receipt, or refuses it."""

from __future__ import annotations

import json
import time
import uuid

import grpc
import structlog
from sim_peer import GB, NG, MakeNetwork, SimNode, submit_note, wait_for
from sqlalchemy import select

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.receipt import Receipt, verify_receipt
from node.config import DeliverySection
from node.services.messages import DELIVERED, FAILED, IN, OUT
from node.storage.models import MessageRow

# Fast rounds and retries: a test waits for outcomes, never for the clock.
DELIVERY = DeliverySection(
    poll_interval_seconds=0.05,
    initial_backoff_seconds=0.01,
    max_backoff_seconds=0.05,
    rpc_timeout_seconds=3.0,
)


def _row(node: SimNode, message_id: str, direction: str) -> MessageRow | None:
    with node.db.read() as s:
        row = s.scalars(
            select(MessageRow).where(
                MessageRow.message_id == uuid.UUID(message_id).bytes,
                MessageRow.direction == direction,
            )
        ).first()
        if row is not None:
            s.expunge(row)
        return row


def _state(node: SimNode, message_id: str) -> str:
    row = _row(node, message_id, OUT)
    assert row is not None
    return row.state


def _kinds(node: SimNode) -> list[str]:
    return [json.loads(r.entry)["kind"] for r in node.store.entries(0, 10_000) if r.entry]


def test_a_delivered_message_is_receipted_and_held_by_the_peer(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    message_id = submit_note(gb, NG, "Shipment 4471")
    gb.start()
    wait_for(lambda: _state(gb, message_id) in (DELIVERED, FAILED))

    sent = _row(gb, message_id, OUT)
    assert sent is not None
    assert sent.state == DELIVERED, sent.last_error
    assert sent.receipt is not None
    assert sent.attempts == 1
    # The stored receipt is NG's signature over this very envelope, at an index of its
    # ledger where NG recorded receiving it.
    body = verify_receipt(
        Receipt.from_bytes(sent.receipt),
        gb.core.directory.current(),
        message_id=sent.message_id,
        envelope_digest=sent.envelope_digest,
        receiver=NG,
        sender=GB,
    )
    [entry] = ng.store.entries(body.ledger_index, 1)
    assert entry.entry is not None
    doc = json.loads(entry.entry)
    assert (doc["kind"], doc["message_id"]) == ("message.received", message_id)
    assert "receipt.stored" in _kinds(gb)
    # NG holds the message and its officer can read it.
    held = _row(ng, message_id, IN)
    assert held is not None
    assert held.envelope_digest == sent.envelope_digest
    view = ng.core.get(
        ng.officer, opb.GetMessageRequest(message_id=message_id, include_content=True)
    )
    assert view.content.subject == "Shipment 4471"
    # One call, with the configured deadline.
    assert [(c.peer, c.method, c.timeout) for c in gb.peers.calls] == [
        (NG, "DeliverBatch", DELIVERY.rpc_timeout_seconds)
    ]


def test_a_peer_that_answers_unavailable_is_tried_again(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.peers.fail(NG, grpc.StatusCode.UNAVAILABLE, times=2, method="DeliverBatch")
    message_id = submit_note(gb, NG, "Retry me")
    with structlog.testing.capture_logs() as logs:
        gb.start()
        wait_for(lambda: _state(gb, message_id) in (DELIVERED, FAILED))

    sent = _row(gb, message_id, OUT)
    assert sent is not None
    assert sent.state == DELIVERED, sent.last_error
    assert sent.attempts == 3
    assert gb.peers.calls_to(NG, "DeliverBatch") == 3
    retries = [e for e in logs if e["event"] == "delivery_retry"]
    assert [e["reason"] for e in retries] == ["peer unreachable (UNAVAILABLE)"] * 2
    assert _row(ng, message_id, IN) is not None
    assert "delivery.failed" not in _kinds(gb)


def test_a_peer_that_is_not_running_is_tried_again(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb = net[GB]
    ng = net.pop(NG)  # NG's node is down: the call cannot reach it
    message_id = submit_note(gb, NG, "Anyone there?")
    gb.start()
    wait_for(lambda: gb.peers.calls_to(NG, "DeliverBatch") >= 2)
    assert _state(gb, message_id) not in (DELIVERED, FAILED)
    net[NG] = ng  # back up: the next attempt gets through
    wait_for(lambda: _state(gb, message_id) == DELIVERED)
    assert _row(ng, message_id, IN) is not None


def test_a_permanent_refusal_fails_the_message(sim_network: MakeNetwork) -> None:
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.peers.fail(
        NG, grpc.StatusCode.INVALID_ARGUMENT, method="DeliverBatch", detail="bad envelope"
    )
    message_id = submit_note(gb, NG, "Refused")
    gb.start()
    wait_for(lambda: _state(gb, message_id) in (DELIVERED, FAILED))
    time.sleep(5 * DELIVERY.poll_interval_seconds)  # a retry would have come by now

    sent = _row(gb, message_id, OUT)
    assert sent is not None
    assert sent.state == FAILED
    assert sent.last_error == f"refused by {NG}: INVALID_ARGUMENT: bad envelope"
    assert gb.peers.calls_to(NG, "DeliverBatch") == 1
    assert "delivery.failed" in _kinds(gb)
    assert _row(ng, message_id, IN) is None


def test_the_peers_own_refusal_fails_the_message(sim_network: MakeNetwork) -> None:
    """NG's real servicer refuses an envelope of GB's that arrives over NG's own TLS key
    (PeerMismatchError, PERMISSION_DENIED): no retry, and NG ledgers the refusal."""
    net = sim_network(DELIVERY)
    gb, ng = net[GB], net[NG]
    gb.peers.caller = ng.identity
    message_id = submit_note(gb, NG, "Wrong key")
    gb.start()
    wait_for(lambda: _state(gb, message_id) in (DELIVERED, FAILED))

    sent = _row(gb, message_id, OUT)
    assert sent is not None
    assert sent.state == FAILED
    assert sent.last_error.startswith(f"refused by {NG}: PERMISSION_DENIED: ")
    assert gb.peers.calls_to(NG, "DeliverBatch") == 1
    assert _row(ng, message_id, IN) is None
    assert "message.rejected" in _kinds(ng)


def test_submissions_beyond_the_lane_wait_their_turn_and_each_goes_once(
    sim_network: MakeNetwork,
) -> None:
    """Two places on the wire to NG: the first two submissions are handed to the worker
    as they are stored, the rest wait in the outbox and are claimed as answers free the
    lane. Every note arrives once, at the first attempt, and the lane is empty after."""
    cfg = DeliverySection(
        poll_interval_seconds=0.05,
        initial_backoff_seconds=0.01,
        max_backoff_seconds=0.05,
        rpc_timeout_seconds=3.0,
        max_in_flight_per_peer=2,
        max_envelopes_per_batch=1,
    )
    net = sim_network(cfg)
    gb, ng = net[GB], net[NG]
    ids = [submit_note(gb, NG, f"note {i}") for i in range(10)]
    leased = [i for i in ids if (r := _row(gb, i, OUT)) is not None and r.lease_until]
    assert len(leased) == 2  # stored already claimed: the lane had two places
    gb.start()
    wait_for(lambda: all(_state(gb, i) == DELIVERED for i in ids))
    for i in ids:
        sent = _row(gb, i, OUT)
        assert sent is not None
        assert sent.attempts == 1
        assert _row(ng, i, IN) is not None
    assert _kinds(gb).count("receipt.stored") == 10
    assert _kinds(ng).count("message.received") == 10
    assert gb.peers.calls_to(NG, "DeliverBatch") == 10  # one envelope per call, none twice
    wait_for(lambda: sum(gb.worker._in_flight.values()) == 0)
