"""The calls a node makes to its peers, as one interface.

`PeerClient` has one method per federation call a node makes (served by
node/rpc/federation.py on the peer). Services and workers take a `PeerClient`;
`GrpcPeerClient` makes the calls over the mutual-TLS channels of `PeerChannels`, and
tests hand in an in-process peer instead (tests/node/sim_peer.py).

Every method names the peer by agency id and takes the call's deadline in seconds. A
peer that is not in the installed directory raises `UnknownSenderError` (an
`MlaxError`) before anything is sent; a call the peer refuses, or that fails on the
way, raises `grpc.RpcError` with its `code()` and `details()`, as a gRPC stub does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from node.peers.channels import PeerChannels


@dataclass(frozen=True)
class DeliverAnswer:
    """How one Deliver ended: the peer's receipt, or the status it ended with."""

    receipt: epb.Receipt | None
    code: grpc.StatusCode | None = None
    detail: str = ""


class PeerClient(Protocol):
    """The federation calls this node makes to a peer."""

    def deliver(
        self,
        peer: str,
        envelope: epb.Envelope,
        timeout: float,
        done: Callable[[DeliverAnswer], None],
    ) -> None:
        """Send `envelope` without waiting for the answer: `done` is called once with it,
        on another thread, or on this one if the call ended at once."""
        ...

    def deliver_batch(
        self,
        peer: str,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        """Send serialised envelopes without waiting: `done` is called once with one
        answer per envelope, in order, on another thread or on this one."""
        ...

    def get_directory(
        self, peer: str, request: fpb.GetDirectoryRequest, timeout: float
    ) -> fpb.GetDirectoryResponse: ...

    def get_inclusion_proof(
        self, peer: str, request: lpb.InclusionProofRequest, timeout: float
    ) -> lpb.InclusionProofResponse: ...

    def get_entries(
        self, peer: str, request: lpb.GetEntriesRequest, timeout: float
    ) -> lpb.GetEntriesResponse: ...

    def add_checkpoint(
        self, peer: str, request: lpb.AddCheckpointRequest, timeout: float
    ) -> lpb.AddCheckpointResponse: ...

    def attachment_status(
        self, peer: str, request: apb.AttachmentStatusRequest, timeout: float
    ) -> apb.AttachmentProgress: ...

    def push_attachment(
        self, peer: str, chunks: Iterator[apb.AttachmentChunk], timeout: float
    ) -> apb.AttachmentProgress:
        """Stream `chunks` (read lazily, one at a time) to the peer."""
        ...

    def match_evaluate(
        self, peer: str, request: mpb.MatchEvaluateRequest, timeout: float
    ) -> mpb.MatchEvaluateResponse:
        """Waits for a peer still connecting (within `timeout`) rather than failing."""
        ...

    def get_match_index(
        self, peer: str, request: mpb.MatchIndexRequest, timeout: float
    ) -> Iterator[mpb.MatchIndexChunk]:
        """The index as a stream; waits for a peer still connecting, as `match_evaluate`."""
        ...


class GrpcPeerClient:
    """`PeerClient` over gRPC: a stub on the peer's channel for each call."""

    def __init__(self, channels: PeerChannels) -> None:
        self.channels = channels

    def _stub(self, peer: str) -> fgrpc.FederationStub:
        return fgrpc.FederationStub(self.channels.channel(peer))

    def deliver(
        self,
        peer: str,
        envelope: epb.Envelope,
        timeout: float,
        done: Callable[[DeliverAnswer], None],
    ) -> None:
        future = self._stub(peer).Deliver.future(envelope, timeout=timeout)

        def settle(f: grpc.Future) -> None:  # type: ignore[type-arg]
            try:
                receipt: epb.Receipt = f.result()
                answer = DeliverAnswer(receipt)
            except grpc.RpcError as e:
                answer = DeliverAnswer(None, e.code(), e.details() or "")
            done(answer)

        future.add_done_callback(settle)

    def deliver_batch(
        self,
        peer: str,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        answers: list[DeliverAnswer | None] = [None] * len(envelopes)
        left = [len(envelopes)]
        lock = threading.Lock()

        def one(i: int) -> Callable[[DeliverAnswer], None]:
            def settle(answer: DeliverAnswer) -> None:
                with lock:
                    answers[i] = answer
                    left[0] -= 1
                    last = left[0] == 0
                if last:
                    done([a for a in answers if a is not None])

            return settle

        for i, data in enumerate(envelopes):
            self.deliver(peer, epb.Envelope.FromString(data), timeout, one(i))

    def get_directory(
        self, peer: str, request: fpb.GetDirectoryRequest, timeout: float
    ) -> fpb.GetDirectoryResponse:
        return self._stub(peer).GetDirectory(request, timeout=timeout)

    def get_inclusion_proof(
        self, peer: str, request: lpb.InclusionProofRequest, timeout: float
    ) -> lpb.InclusionProofResponse:
        return self._stub(peer).GetInclusionProof(request, timeout=timeout)

    def get_entries(
        self, peer: str, request: lpb.GetEntriesRequest, timeout: float
    ) -> lpb.GetEntriesResponse:
        return self._stub(peer).GetEntries(request, timeout=timeout)

    def add_checkpoint(
        self, peer: str, request: lpb.AddCheckpointRequest, timeout: float
    ) -> lpb.AddCheckpointResponse:
        return self._stub(peer).AddCheckpoint(request, timeout=timeout)

    def attachment_status(
        self, peer: str, request: apb.AttachmentStatusRequest, timeout: float
    ) -> apb.AttachmentProgress:
        return self._stub(peer).AttachmentStatus(request, timeout=timeout)

    def push_attachment(
        self, peer: str, chunks: Iterator[apb.AttachmentChunk], timeout: float
    ) -> apb.AttachmentProgress:
        return self._stub(peer).PushAttachment(chunks, timeout=timeout)

    def match_evaluate(
        self, peer: str, request: mpb.MatchEvaluateRequest, timeout: float
    ) -> mpb.MatchEvaluateResponse:
        # wait_for_ready: a channel still backing off from an earlier failure waits for
        # the peer (within the timeout) instead of failing at once.
        return self._stub(peer).MatchEvaluate(request, timeout=timeout, wait_for_ready=True)

    def get_match_index(
        self, peer: str, request: mpb.MatchIndexRequest, timeout: float
    ) -> Iterator[mpb.MatchIndexChunk]:
        return self._stub(peer).GetMatchIndex(request, timeout=timeout, wait_for_ready=True)

    def close(self) -> None:
        self.channels.close()
