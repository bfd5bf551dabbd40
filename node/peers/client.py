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
import time
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
from node.config import DELIVER_BATCH_FLOOR
from node.peers.channels import PeerChannels


@dataclass(frozen=True)
class DeliverAnswer:
    """How one Deliver ended: the peer's receipt, or the status it ended with."""

    receipt: epb.Receipt | None
    code: grpc.StatusCode | None = None
    detail: str = ""


DELIVER_METHOD = "/mlax.v1.Federation/Deliver"
# How long a peer that does not implement DeliverBatch gets one Deliver per envelope
# before it is asked again (it may have been upgraded meanwhile).
OLD_PEER_SECONDS = 600.0
# Deliver calls in flight at once to such a peer, for one batch (its default per-caller
# limit is 16 calls).
_FALLBACK_IN_FLIGHT = 8
# A peer's sentence about one envelope of a batch is kept to this many characters.
_MAX_DETAIL = 500
# gRPC status codes by number, for a DeliverBatch result's status.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def _answer_of(f: grpc.Future) -> DeliverAnswer:  # type: ignore[type-arg]
    """How a finished Deliver call ended."""
    try:
        receipt: epb.Receipt = f.result()
    except grpc.RpcError as e:
        return DeliverAnswer(None, e.code(), e.details() or "")
    return DeliverAnswer(receipt)


def batch_answers(response: fpb.DeliverBatchResponse, count: int) -> list[DeliverAnswer]:
    """A DeliverBatch response as one answer per envelope sent (`count` of them)."""
    if len(response.results) != count:
        detail = f"The peer answered {len(response.results)} results for {count} envelopes."
        return [DeliverAnswer(None, grpc.StatusCode.UNKNOWN, detail)] * count
    answers = []
    for result in response.results:
        kind = result.WhichOneof("result")
        if kind == "receipt":
            answers.append(DeliverAnswer(result.receipt))
        elif kind == "status" and result.status.code != grpc.StatusCode.OK.value[0]:
            code = _STATUS_CODES.get(result.status.code, grpc.StatusCode.UNKNOWN)
            answers.append(DeliverAnswer(None, code, result.status.message[:_MAX_DETAIL]))
        else:
            detail = "The peer's result for this envelope holds neither a receipt nor a status."
            answers.append(DeliverAnswer(None, grpc.StatusCode.UNKNOWN, detail))
    return answers


class _Joined:
    """Collects the answers of `count` parts, in order, and calls `done` once with all."""

    def __init__(self, count: int, done: Callable[[list[DeliverAnswer]], None]) -> None:
        self._parts: list[list[DeliverAnswer] | None] = [None] * count
        self._left = count
        self._lock = threading.Lock()
        self._done = done

    def part(self, n: int) -> Callable[[list[DeliverAnswer]], None]:
        def settle(answers: list[DeliverAnswer]) -> None:
            with self._lock:
                self._parts[n] = answers
                self._left -= 1
                last = self._left == 0
            if last:
                self._done([a for p in self._parts if p is not None for a in p])

        return settle


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
        answer per envelope, in order, on another thread or on this one. A call that
        fails as a whole (the peer down, the deadline passed) answers every envelope it
        carried with its status."""
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

    def __init__(self, channels: PeerChannels, clock: Callable[[], float] = time.monotonic) -> None:
        self.channels = channels
        self._clock = clock
        self._lock = threading.Lock()
        # Peers that answered DeliverBatch UNIMPLEMENTED: until when they get Deliver calls.
        self._old: dict[str, float] = {}

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
        future.add_done_callback(lambda f: done(_answer_of(f)))

    def deliver_batch(
        self,
        peer: str,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        """One `DeliverBatch` call per `DELIVER_BATCH_FLOOR` envelopes (what every node
        accepts); to a peer that answers it UNIMPLEMENTED (a node of an earlier version),
        one `Deliver` per envelope, without asking it again for `OLD_PEER_SECONDS`."""
        if not envelopes:
            done([])
            return
        channel = self.channels.channel(peer)  # an unknown peer raises before anything is sent
        parts = [
            envelopes[i : i + DELIVER_BATCH_FLOOR]
            for i in range(0, len(envelopes), DELIVER_BATCH_FLOOR)
        ]
        joined = _Joined(len(parts), done)
        for n, part in enumerate(parts):
            if self._old_peer(peer):
                self._one_by_one(channel, part, timeout, joined.part(n))
            else:
                self._batch(peer, channel, part, timeout, joined.part(n))

    def _batch(
        self,
        peer: str,
        channel: grpc.Channel,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        request = fpb.DeliverBatchRequest(envelopes=envelopes)
        future = fgrpc.FederationStub(channel).DeliverBatch.future(request, timeout=timeout)

        def settle(f: grpc.Future) -> None:  # type: ignore[type-arg]
            try:
                response: fpb.DeliverBatchResponse = f.result()
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNIMPLEMENTED:
                    with self._lock:
                        self._old[peer] = self._clock() + OLD_PEER_SECONDS
                    self._one_by_one(channel, envelopes, timeout, done)
                    return
                # The call failed as a whole: every envelope ends with its status.
                done([DeliverAnswer(None, e.code(), e.details() or "")] * len(envelopes))
                return
            done(batch_answers(response, len(envelopes)))

        future.add_done_callback(settle)

    def _old_peer(self, peer: str) -> bool:
        with self._lock:
            until = self._old.get(peer)
            if until is not None and self._clock() >= until:
                del self._old[peer]  # ask it again: it may have been upgraded
                until = None
        return until is not None

    def _one_by_one(
        self,
        channel: grpc.Channel,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        # The serialised envelope is Deliver's request as it is: sent without re-encoding.
        call: grpc.UnaryUnaryMultiCallable[bytes, epb.Receipt] = channel.unary_unary(
            DELIVER_METHOD, request_serializer=None, response_deserializer=epb.Receipt.FromString
        )
        # All of them within the batch's deadline, as one DeliverBatch call would be.
        deadline = time.monotonic() + timeout
        joined = _Joined(len(envelopes), done)
        queue = list(enumerate(envelopes))
        queue.reverse()
        lock = threading.Lock()

        def send_next() -> None:
            # At most _FALLBACK_IN_FLIGHT calls at once, within the peer's per-caller limit.
            with lock:
                if not queue:
                    return
                n, data = queue.pop()
            settle = joined.part(n)
            left = deadline - time.monotonic()
            if left <= 0:
                settle(
                    [DeliverAnswer(None, grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")]
                )
                send_next()
                return

            def settled(f: grpc.Future) -> None:  # type: ignore[type-arg]
                settle([_answer_of(f)])
                send_next()

            call.future(data, timeout=left).add_done_callback(settled)

        for _ in range(min(len(envelopes), _FALLBACK_IN_FLIGHT)):
            send_next()

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
