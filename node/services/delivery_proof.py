"""Delivery evidence beyond the receipt: proof that the receiver ledgered the delivery.

The receipt names the receiver's ledger index. The sender fetches the inclusion proof of
that index in a checkpoint the receiver signed, and the entry itself (the receiver shows
a peer the entries that concern it), and checks that the entry records exactly this
envelope. A receiver that later drops or alters the entry cannot hide it from an
auditor holding this proof.
"""

from __future__ import annotations

import json

import grpc

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.encoding import format_uuid
from exchange.errors import MlaxError
from exchange.ledger import leaf_hash, open_checkpoint, verify_inclusion
from exchange.ledger.names import log_origin, log_verifiers
from exchange.ledger_entry import commitment
from exchange.receipt import Receipt
from node.peers.client import PeerClient
from node.services.messages import OUT, NodeCore, NotFoundError


def delivery_proof(
    core: NodeCore, peers: PeerClient, message_id: str, timeout: float
) -> opb.DeliveryProof:
    """Fetch and verify the receiver's inclusion proof for one of our delivered messages."""
    with core.db.read() as s:
        row = core._load(s, message_id)
    if row.direction != OUT or row.receipt is None:
        raise NotFoundError(f"Message {message_id} has no receipt from its recipient yet.")
    receipt = Receipt.from_bytes(row.receipt).parsed()
    index = receipt.ledger_index
    out = opb.DeliveryProof(ledger_index=index)
    try:
        resp = peers.get_inclusion_proof(row.peer, lpb.InclusionProofRequest(index=index), timeout)
        entries = peers.get_entries(row.peer, lpb.GetEntriesRequest(start=index, count=1), timeout)
    except grpc.RpcError as e:
        out.problem = f"{row.peer} did not provide the proof: {e.code().name}: {e.details()}"
        return out
    out.proof.CopyFrom(resp)
    directory = core.directory.current()
    origin = log_origin(directory.federation_id, row.peer)
    try:
        checkpoint = open_checkpoint(
            resp.checkpoint.note, origin, log_verifiers(directory, row.peer)
        )
        if resp.index != index or checkpoint.size != resp.tree_size or index >= checkpoint.size:
            raise MlaxError("The proof is for another index or checkpoint.")
        verify_inclusion(
            leaf_hash(resp.commitment),
            index,
            checkpoint.size,
            list(resp.proof),
            checkpoint.root_hash,
        )
        if not entries.entries or not entries.entries[0].entry:
            raise MlaxError(f"{row.peer} withheld the ledger entry of our delivery.")
        entry = entries.entries[0]
        if commitment(entry.salt, entry.entry) != resp.commitment:
            raise MlaxError("The ledger entry does not match its commitment.")
        doc = json.loads(entry.entry)
        if (
            doc.get("kind") != "message.received"
            or doc.get("message_id") != format_uuid(row.message_id)
            or doc.get("envelope_digest") != row.envelope_digest.hex()
        ):
            raise MlaxError("The ledger entry records another event than our delivery.")
    except (MlaxError, ValueError) as e:
        out.problem = getattr(e, "message", str(e))
        return out
    out.verified = True
    return out
