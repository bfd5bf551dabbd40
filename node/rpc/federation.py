"""The federation service (`mlax.v1.Federation`): calls from peer nodes.

Every call first names the calling agency from its pinned TLS key (node.rpc.auth);
`Deliver` and `DeliverBatch` take raw bytes so each envelope is parsed strictly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import structlog

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.errors import InvalidFieldError, MlaxError, OversizedError, Status
from exchange.receipt import Receipt
from exchange.wire import parse
from node import metrics
from node.config import DELIVER_BATCH_FLOOR
from node.logs import LogBudget
from node.rpc.auth import peer_agency
from node.services.evidence import AttachmentDesk
from node.services.ledger_view import LedgerView
from node.services.matching import MatchDesk
from node.services.messages import NodeCore
from node.services.trust import MAX_DIRECTORY_CHAIN
from node.services.witnessing import WitnessDesk
from node.storage.ledger import LedgerStore

log = structlog.get_logger("mlax.node")

FEDERATION_SERVICE = "mlax.v1.Federation"
# A refused envelope's status in a DeliverBatch result, as a gRPC code number.
_CODES = {Status(code.name): code.value[0] for code in grpc.StatusCode}


class BatchTooLargeError(OversizedError):
    """A DeliverBatch call with more envelopes than limits.max_deliver_batch."""


_refusal_budget = LogBudget(per_window=10, window=60.0)


@contextmanager
def _refusal_logged(event: str, peer: str) -> Iterator[None]:
    """Log a peer's refused call (its error class, never content), at most 10 lines a
    minute per peer, event and reason (a peer can be refused as fast as it calls; the
    next line says how many were not logged); the error goes on to the error
    interceptor, which answers it."""
    try:
        yield
    except MlaxError as e:
        reason = type(e).__name__
        allowed, suppressed = _refusal_budget.allow((event, peer, reason))
        if allowed:
            log.warning(event, peer=peer, reason=reason, suppressed=suppressed)
        raise


class FederationService:
    """Node-to-node calls. Deliver takes raw bytes so the envelope is parsed strictly once."""

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        attachments: AttachmentDesk,
        matching: MatchDesk,
        max_batch: int = DELIVER_BATCH_FLOOR,
    ) -> None:
        self.core = core
        # Envelopes one DeliverBatch call may carry (limits.max_deliver_batch).
        self.max_batch = max_batch
        self.store = store
        self.ledger = LedgerView(core, store)
        self.desk = WitnessDesk(core)
        self.attachments = attachments
        self.matching = matching

    def _peer(self, context: grpc.ServicerContext) -> str:
        return peer_agency(self.core.directory.current(), context)

    def deliver(self, request: bytes, context: grpc.ServicerContext) -> epb.Receipt:
        peer = self._peer(context)
        [answer] = self._receive(peer, [request])
        if isinstance(answer, MlaxError):
            raise answer
        return epb.Receipt(body=answer.body, signature=answer.signature)

    def deliver_batch(
        self, request: bytes, context: grpc.ServicerContext
    ) -> fpb.DeliverBatchResponse:
        """Deliver for each envelope of the request: one result each, in order."""
        peer = self._peer(context)
        try:
            batch = parse(fpb.DeliverBatchRequest, request, "DeliverBatch request", len(request))
            count = len(batch.envelopes)
            if not count:
                raise InvalidFieldError("A DeliverBatch request needs at least one envelope.")
            if count > self.max_batch:
                raise BatchTooLargeError(
                    f"A DeliverBatch call carries at most {self.max_batch} envelopes; "
                    f"this one has {count}."
                )
        except MlaxError as e:
            self._refused(peer, e)
            raise
        response = fpb.DeliverBatchResponse()
        for answer in self._receive(peer, list(batch.envelopes)):
            if isinstance(answer, MlaxError):
                status = fpb.DeliverStatus(code=_CODES[answer.status], message=answer.message)
                response.results.add(status=status)
            else:
                response.results.add(
                    receipt=epb.Receipt(body=answer.body, signature=answer.signature)
                )
        return response

    def _receive(self, peer: str, envelopes: list[bytes]) -> list[Receipt | MlaxError]:
        answers = self.core.receive_many(envelopes, peer)
        received = 0
        for answer in answers:
            if isinstance(answer, MlaxError):
                self._refused(peer, answer)
            else:
                received += 1
        if received:
            metrics.RECEIVED.labels(peer=peer).inc(received)
        return answers

    def _refused(self, peer: str, e: MlaxError) -> None:
        """Count, log and ledger (at the bounded rate) one refused envelope or call."""
        reason = type(e).__name__
        metrics.REJECTED.labels(reason=reason).inc()
        log.warning("envelope_refused", peer=peer, reason=reason, status=e.status)
        try:
            self.core.record_rejection(peer, reason, e)
        except Exception:
            log.exception("rejection_not_ledgered")

    def get_directory(
        self, request: fpb.GetDirectoryRequest, context: grpc.ServicerContext
    ) -> fpb.GetDirectoryResponse:
        self._peer(context)
        current = self.core.directory.current()
        if request.have_version >= current.version:
            return fpb.GetDirectoryResponse(version=current.version)
        signed = self.core.directory.signed_bytes()
        chain: list[bytes] = []
        first, last = request.have_version + 1, current.version - 1
        if request.have_version and 0 < last - first + 1 <= MAX_DIRECTORY_CHAIN:
            # The versions in between, so that a caller that missed a change of
            # administrators can verify its way up; all of them, or none.
            room = self.core.limits.max_envelope_bytes - len(signed)
            chain = self.core.directory.stored_versions(first, last, room)
        return fpb.GetDirectoryResponse(
            signed_directory=signed, version=current.version, chain=chain
        )

    # -- the audit ledger -------------------------------------------------------------------

    def get_checkpoint(
        self, request: lpb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> lpb.CheckpointRecord:
        self._peer(context)
        return self.ledger.latest_checkpoint()

    def get_inclusion_proof(
        self, request: lpb.InclusionProofRequest, context: grpc.ServicerContext
    ) -> lpb.InclusionProofResponse:
        self._peer(context)
        return self.ledger.inclusion_proof(request.index, request.tree_size)

    def get_consistency_proof(
        self, request: lpb.ConsistencyProofRequest, context: grpc.ServicerContext
    ) -> lpb.ConsistencyProofResponse:
        self._peer(context)
        return self.ledger.consistency_proof(request.old_size, request.new_size)

    def get_entries(
        self, request: lpb.GetEntriesRequest, context: grpc.ServicerContext
    ) -> lpb.GetEntriesResponse:
        return self.ledger.entries_for(self._peer(context), request.start, request.count)

    def add_checkpoint(
        self, request: lpb.AddCheckpointRequest, context: grpc.ServicerContext
    ) -> lpb.AddCheckpointResponse:
        peer = self._peer(context)
        with _refusal_logged("cosign_refused", peer):
            return self.desk.add_checkpoint(request, peer)

    def attachment_status(
        self, request: apb.AttachmentStatusRequest, context: grpc.ServicerContext
    ) -> apb.AttachmentProgress:
        peer = self._peer(context)
        return self.attachments.peer_status(peer, bytes(request.attachment_id))

    def push_attachment(
        self, request_iterator: Iterator[apb.AttachmentChunk], context: grpc.ServicerContext
    ) -> apb.AttachmentProgress:
        peer = self._peer(context)
        with _refusal_logged("attachment_refused", peer):
            return self.attachments.receive_chunks(peer, request_iterator)

    def match_evaluate(
        self, request: mpb.MatchEvaluateRequest, context: grpc.ServicerContext
    ) -> mpb.MatchEvaluateResponse:
        peer = self._peer(context)
        with _refusal_logged("match_evaluation_refused", peer):
            return self.matching.evaluate(peer, request)

    def get_match_index(
        self, request: mpb.MatchIndexRequest, context: grpc.ServicerContext
    ) -> Iterator[mpb.MatchIndexChunk]:
        peer = self._peer(context)
        # A key generation or token domain not served is refused, and logged like a quota.
        with _refusal_logged("match_index_refused", peer):
            yield from self.matching.index(peer, request)

    def handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Any, req: Any, resp: Any) -> grpc.RpcMethodHandler[Any, Any]:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString
            )

        return grpc.method_handlers_generic_handler(
            FEDERATION_SERVICE,
            {
                "GetCheckpoint": unary(
                    self.get_checkpoint, lpb.GetCheckpointRequest, lpb.CheckpointRecord
                ),
                "GetInclusionProof": unary(
                    self.get_inclusion_proof, lpb.InclusionProofRequest, lpb.InclusionProofResponse
                ),
                "GetConsistencyProof": unary(
                    self.get_consistency_proof,
                    lpb.ConsistencyProofRequest,
                    lpb.ConsistencyProofResponse,
                ),
                "GetEntries": unary(
                    self.get_entries, lpb.GetEntriesRequest, lpb.GetEntriesResponse
                ),
                "AddCheckpoint": unary(
                    self.add_checkpoint, lpb.AddCheckpointRequest, lpb.AddCheckpointResponse
                ),
                "Deliver": grpc.unary_unary_rpc_method_handler(
                    self.deliver,
                    request_deserializer=None,
                    response_serializer=epb.Receipt.SerializeToString,
                ),
                "DeliverBatch": grpc.unary_unary_rpc_method_handler(
                    self.deliver_batch,
                    request_deserializer=None,
                    response_serializer=fpb.DeliverBatchResponse.SerializeToString,
                ),
                "GetDirectory": unary(
                    self.get_directory, fpb.GetDirectoryRequest, fpb.GetDirectoryResponse
                ),
                "AttachmentStatus": unary(
                    self.attachment_status, apb.AttachmentStatusRequest, apb.AttachmentProgress
                ),
                "PushAttachment": grpc.stream_unary_rpc_method_handler(
                    self.push_attachment,
                    request_deserializer=apb.AttachmentChunk.FromString,
                    response_serializer=apb.AttachmentProgress.SerializeToString,
                ),
                "MatchEvaluate": unary(
                    self.match_evaluate, mpb.MatchEvaluateRequest, mpb.MatchEvaluateResponse
                ),
                "GetMatchIndex": grpc.unary_stream_rpc_method_handler(
                    self.get_match_index,
                    request_deserializer=mpb.MatchIndexRequest.FromString,
                    response_serializer=mpb.MatchIndexChunk.SerializeToString,
                ),
            },
        )
