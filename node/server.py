"""The node process: federation and officer gRPC listeners, delivery worker, metrics."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any, cast

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.agency import PublicKey
from exchange.directory import verify_directory
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import Limits
from exchange.errors import InvalidFieldError, MlaxError
from exchange.ledger.export import EXPORT_FORMAT
from exchange.ledger.names import log_origin
from exchange.ledger_entry import LedgerEntry
from keys.identity import AgencyIdentity, load_identity
from node import metrics
from node.config import ConfigError, NodeConfig
from node.logs import error_fields
from node.peers.channels import PeerChannels
from node.rpc.errors import (
    BusyError,
    ErrorInterceptor,
    NotYetError,
    OutOfRangeError,
    UnauthenticatedError,
    is_storage_full,
)
from node.rpc.limits import CallLimiter, ListenerLimits, officer_callers, peer_callers
from node.services.cases import CaseDesk, ClockWatch, forward
from node.services.delivery_proof import delivery_proof
from node.services.evidence import AttachmentDesk, AttachmentPusher
from node.services.matching import MatchDesk, MatchSync
from node.services.messages import NodeCore, NotFoundError, Officer, PermissionDeniedError, summary
from node.services.officers import OfficerCA, lookup, spki_sha256
from node.services.rejections import RejectionLedger
from node.services.trust import TrustedDirectory
from node.services.witnessing import Checkpointer, WitnessDesk
from node.storage import ledger
from node.storage.blobs import LocalBlobStore
from node.storage.db import Database, private_dir
from node.storage.ledger import LedgerStore, concerns
from node.transport import bound_buffer_memory, channel_options
from node.workers.delivery import DeliveryWorker, outbox_depth
from node.workers.periodic import Periodic

log = structlog.get_logger("mlax.node")

FEDERATION_SERVICE = "mlax.v1.Federation"
OFFICER_SERVICE = "mlax.v1.Officer"


def _peer_cert(context: grpc.ServicerContext) -> bytes | None:
    certs = cast("list[bytes] | None", context.auth_context().get("x509_pem_cert"))
    return certs[0] if certs else None


class FederationService:
    """Node-to-node calls. Deliver takes raw bytes so the envelope is parsed strictly once."""

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        attachments: AttachmentDesk,
        matching: MatchDesk,
    ) -> None:
        self.core = core
        self.store = store
        self.desk = WitnessDesk(core)
        self.attachments = attachments
        self.matching = matching

    def _peer(self, context: grpc.ServicerContext) -> str:
        cert = _peer_cert(context)
        card = self.core.directory.current().agency_by_tls_pin(spki_sha256(cert)) if cert else None
        if card is None:
            metrics.REJECTED.labels(reason="unknown_peer").inc()
            log.warning("peer_refused", reason="tls_key_not_in_directory", peer=context.peer())
            raise UnauthenticatedError(
                "Your TLS key is not pinned for any agency in this node's directory."
            )
        return card.agency_id

    def deliver(self, request: bytes, context: grpc.ServicerContext) -> epb.Receipt:
        peer = self._peer(context)
        try:
            receipt = self.core.receive(request, peer)
        except MlaxError as e:
            reason = type(e).__name__
            metrics.REJECTED.labels(reason=reason).inc()
            log.warning("envelope_refused", peer=peer, reason=reason, status=e.status)
            try:
                self.core.record_rejection(peer, reason, e)
            except Exception:
                log.exception("rejection_not_ledgered")
            raise
        metrics.RECEIVED.labels(peer=peer).inc()
        body = receipt.parsed()
        log.info(
            "envelope_received",
            peer=peer,
            message_id=format_uuid(body.message_id),
            ledger_index=body.ledger_index,
        )
        return epb.Receipt(body=receipt.body, signature=receipt.signature)

    def get_directory(
        self, request: fpb.GetDirectoryRequest, context: grpc.ServicerContext
    ) -> fpb.GetDirectoryResponse:
        self._peer(context)
        current = self.core.directory.current()
        if request.have_version >= current.version:
            return fpb.GetDirectoryResponse(version=current.version)
        return fpb.GetDirectoryResponse(
            signed_directory=self.core.directory.signed_bytes(), version=current.version
        )

    # -- the audit ledger -------------------------------------------------------------------

    def get_checkpoint(
        self, request: lpb.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> lpb.CheckpointRecord:
        self._peer(context)
        latest = self.store.latest_checkpoint()
        if latest is None:
            raise NotFoundError("This node has not signed a checkpoint yet.")
        return self.store.record(latest)

    def get_inclusion_proof(
        self, request: lpb.InclusionProofRequest, context: grpc.ServicerContext
    ) -> lpb.InclusionProofResponse:
        self._peer(context)
        row = (
            self.store.checkpoint(request.tree_size)
            if request.tree_size
            else self.store.latest_checkpoint()
        )
        if row is None:
            raise NotFoundError("No checkpoint of that size.")
        if request.index >= row.size:
            raise NotYetError(
                f"Entry {request.index} is not in a signed checkpoint yet (latest size {row.size})."
            )
        try:
            digest, proof = self.store.inclusion_proof(request.index, row.size)
        except LookupError:
            raise NotFoundError(f"No ledger entry {request.index}.") from None
        return lpb.InclusionProofResponse(
            index=request.index,
            tree_size=row.size,
            commitment=digest,
            proof=proof,
            checkpoint=self.store.record(row),
        )

    def get_consistency_proof(
        self, request: lpb.ConsistencyProofRequest, context: grpc.ServicerContext
    ) -> lpb.ConsistencyProofResponse:
        self._peer(context)
        size = self.store.size()
        if not 0 < request.old_size <= request.new_size <= size:
            raise InvalidFieldError(f"Sizes must satisfy 0 < old <= new <= {size}.")
        return lpb.ConsistencyProofResponse(
            proof=self.store.consistency_proof(request.old_size, request.new_size)
        )

    def get_entries(
        self, request: lpb.GetEntriesRequest, context: grpc.ServicerContext
    ) -> lpb.GetEntriesResponse:
        peer = self._peer(context)
        # Past the end the list is empty; no index beyond the ledger reaches the database.
        rows = (
            self.store.entries(request.start, min(request.count or 100, 1000))
            if request.start < self.store.size()
            else []
        )
        # A peer reads the entries that concern it; of the others it sees commitments only.
        return lpb.GetEntriesResponse(
            entries=[
                lpb.LedgerEntry(
                    index=r.idx,
                    commitment=r.commitment,
                    salt=(r.salt or b"") if concerns(r.entry, peer) else b"",
                    entry=(r.entry or b"") if concerns(r.entry, peer) else b"",
                )
                for r in rows
            ]
        )

    def add_checkpoint(
        self, request: lpb.AddCheckpointRequest, context: grpc.ServicerContext
    ) -> lpb.AddCheckpointResponse:
        peer = self._peer(context)
        try:
            return self.desk.add_checkpoint(request, peer)
        except MlaxError as e:
            log.warning("cosign_refused", peer=peer, reason=type(e).__name__)
            raise

    def attachment_status(
        self, request: apb.AttachmentStatusRequest, context: grpc.ServicerContext
    ) -> apb.AttachmentProgress:
        peer = self._peer(context)
        return self.attachments.peer_status(peer, bytes(request.attachment_id))

    def push_attachment(
        self, request_iterator: Iterator[apb.AttachmentChunk], context: grpc.ServicerContext
    ) -> apb.AttachmentProgress:
        peer = self._peer(context)
        try:
            return self.attachments.receive_chunks(peer, request_iterator)
        except MlaxError as e:
            log.warning("attachment_refused", peer=peer, reason=type(e).__name__)
            raise

    def match_evaluate(
        self, request: mpb.MatchEvaluateRequest, context: grpc.ServicerContext
    ) -> mpb.MatchEvaluateResponse:
        peer = self._peer(context)
        try:
            return self.matching.evaluate(peer, request)
        except MlaxError as e:
            log.warning("match_evaluation_refused", peer=peer, reason=type(e).__name__)
            raise

    def get_match_index(
        self, request: mpb.MatchIndexRequest, context: grpc.ServicerContext
    ) -> Iterator[mpb.MatchIndexChunk]:
        peer = self._peer(context)
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


# Which roles may make each officer call.
_ROLES = {
    "Submit": {"officer", "supervisor"},
    "ListMessages": {"officer", "supervisor", "auditor"},
    "GetMessage": {"officer", "supervisor", "auditor"},
    "Watch": {"officer", "supervisor"},
    "WhoAmI": {"officer", "supervisor", "auditor", "admin"},
    "ExportLedger": {"auditor"},
    "GetDeliveryProof": {"officer", "supervisor", "auditor"},
    "Forward": {"officer", "supervisor"},
    "CreateCase": {"officer", "supervisor"},
    "CaseAction": {"officer", "supervisor"},
    "ApproveCase": {"supervisor"},
    "ListCases": {"officer", "supervisor", "auditor"},
    "GetCase": {"officer", "supervisor", "auditor"},
    "Upload": {"officer", "supervisor"},
    "GetUpload": {"officer", "supervisor"},
    "Download": {"officer", "supervisor"},
    "LoadRecords": {"officer", "supervisor"},
    "MatchQuery": {"officer", "supervisor"},
    # Disclosing a victim's identity is the holder supervisor's decision (four-eyes).
    "Disclose": {"supervisor"},
}


class OfficerService(ogrpc.OfficerServicer):
    """Officer calls: each authenticates the client certificate and checks the role."""

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        peers: PeerChannels,
        max_watchers: int,
        timeout: float,
        cases: CaseDesk,
        attachments: AttachmentDesk,
        matching: MatchDesk,
    ) -> None:
        self.core = core
        self.store = store
        self.peers = peers
        self.timeout = timeout
        self.cases = cases
        self.attachments = attachments
        self.matching = matching
        self._watchers = threading.BoundedSemaphore(max_watchers)

    def ExportLedger(
        self, request: opb.ExportLedgerRequest, context: grpc.ServicerContext
    ) -> Iterator[lpb.LedgerExportRecord]:
        officer = self._officer(context, "ExportLedger")
        size = self.store.size()
        if request.end > size or request.start > (request.end or size):
            raise OutOfRangeError(
                f"The export range must satisfy start <= end <= {size} (end 0 = to the end)."
            )
        with self.core.db.write() as s:
            ledger.append(
                s,
                LedgerEntry.of(
                    "ledger.exported",
                    now_ms(),
                    officer=officer.name,
                    start=request.start,
                    end=request.end,
                ),
            )
        header = lpb.LedgerExportHeader(
            format=EXPORT_FORMAT,
            origin=self.store.origin,
            agency=self.core.agency,
            signed_directory=self.core.directory.signed_bytes(),
            exported_at=now_ms(),
        )
        yield from self.store.export(header, request.start, request.end)

    def GetDeliveryProof(
        self, request: opb.DeliveryProofRequest, context: grpc.ServicerContext
    ) -> opb.DeliveryProof:
        self._officer(context, "GetDeliveryProof")
        return delivery_proof(self.core, self.peers, request.message_id, self.timeout)

    def _officer(self, context: grpc.ServicerContext, call: str) -> Officer:
        cert = _peer_cert(context)
        row = lookup(self.core.db, cert) if cert else None
        if row is None:
            metrics.REJECTED.labels(reason="unknown_officer").inc()
            raise UnauthenticatedError("This credential is not an active officer here.")
        if row.role not in _ROLES[call]:
            metrics.REJECTED.labels(reason="role").inc()
            log.warning("officer_refused", officer=row.name, role=row.role, call=call)
            raise PermissionDeniedError(f"The {row.role} role may not call {call}.")
        return Officer(row.name, row.role)

    def Submit(
        self, request: opb.SubmitRequest, context: grpc.ServicerContext
    ) -> opb.MessageSummary:
        officer = self._officer(context, "Submit")
        result = self.core.submit(officer, request)
        log.info("submitted", officer=officer.name, message_id=result.message_id, peer=result.peer)
        return result

    def ListMessages(
        self, request: opb.ListMessagesRequest, context: grpc.ServicerContext
    ) -> opb.ListMessagesResponse:
        self._officer(context, "ListMessages")
        return self.core.list_messages(request)

    def GetMessage(
        self, request: opb.GetMessageRequest, context: grpc.ServicerContext
    ) -> opb.MessageView:
        officer = self._officer(context, "GetMessage")
        return self.core.get(officer, request)

    def Watch(
        self, request: opb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[opb.MessageSummary]:
        self._officer(context, "Watch")
        if not self._watchers.acquire(blocking=False):
            raise BusyError("Too many watchers on this node.")
        try:
            cursor = self.core.inbound_cursor(request.after_message_id)
            while context.is_active():
                # A deactivated or demoted officer's stream ends at the next wake.
                self._officer(context, "Watch")
                rows = self.core.inbound_after(cursor)
                for row in rows:
                    cursor = row.id
                    yield summary(row)
                if not rows:
                    with self.core.inbound:
                        self.core.inbound.wait(timeout=1.0)
        finally:
            self._watchers.release()

    def Forward(
        self, request: cpb.ForwardRequest, context: grpc.ServicerContext
    ) -> opb.MessageSummary:
        officer = self._officer(context, "Forward")
        new_id = forward(self.core, officer, request.message_id, request.recipient, request.note)
        return self.core.get(officer, opb.GetMessageRequest(message_id=format_uuid(new_id))).summary

    def _case_view(self, officer: Officer, case_ref: str, content: bool = False) -> cpb.CaseView:
        return self.cases.view(officer, case_ref, content, self.attachments.list_for_case)

    def CreateCase(
        self, request: cpb.CreateCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        officer = self._officer(context, "CreateCase")
        ref = self.cases.create(officer, request)
        log.info("case_created", officer=officer.name, case_ref=ref)
        return self._case_view(officer, ref)

    def CaseAction(
        self, request: cpb.CaseActionRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        officer = self._officer(context, "CaseAction")
        ref = self.cases.act(officer, request)
        return self._case_view(officer, ref)

    def ApproveCase(
        self, request: cpb.ApproveCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        officer = self._officer(context, "ApproveCase")
        cert = _peer_cert(context) or b""
        ref = self.cases.approve(officer, request, cert)
        return self._case_view(officer, ref)

    def ListCases(
        self, request: cpb.ListCasesRequest, context: grpc.ServicerContext
    ) -> cpb.ListCasesResponse:
        self._officer(context, "ListCases")
        return self.cases.list_cases(request)

    def GetCase(self, request: cpb.GetCaseRequest, context: grpc.ServicerContext) -> cpb.CaseView:
        officer = self._officer(context, "GetCase")
        return self._case_view(officer, request.case_ref, request.include_content)

    def Upload(
        self, request_iterator: Iterator[apb.UploadPart], context: grpc.ServicerContext
    ) -> apb.UploadStatus:
        officer = self._officer(context, "Upload")
        return self.attachments.upload(officer, request_iterator)

    def GetUpload(
        self, request: apb.GetUploadRequest, context: grpc.ServicerContext
    ) -> apb.UploadStatus:
        officer = self._officer(context, "GetUpload")
        return self.attachments.upload_status(officer, request.upload_id)

    def Download(
        self, request: apb.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.DownloadPart]:
        officer = self._officer(context, "Download")
        yield from self.attachments.download(officer, request)

    def LoadRecords(
        self, request_iterator: Iterator[mpb.LoadRecordsRequest], context: grpc.ServicerContext
    ) -> mpb.LoadRecordsResponse:
        officer = self._officer(context, "LoadRecords")
        return self.matching.load(officer, request_iterator)

    def MatchQuery(
        self, request: mpb.MatchQueryRequest, context: grpc.ServicerContext
    ) -> Iterator[mpb.MatchAnswer]:
        officer = self._officer(context, "MatchQuery")
        yield from self.matching.query(officer, request)

    def Disclose(self, request: mpb.DiscloseRequest, context: grpc.ServicerContext) -> cpb.CaseView:
        officer = self._officer(context, "Disclose")
        ref = self.matching.disclose(officer, request.case_ref)
        return self._case_view(officer, ref)

    def WhoAmI(
        self, request: opb.WhoAmIRequest, context: grpc.ServicerContext
    ) -> opb.WhoAmIResponse:
        officer = self._officer(context, "WhoAmI")
        directory = self.core.directory.current()
        return opb.WhoAmIResponse(
            officer=officer.name,
            role=officer.role,
            agency=self.core.agency,
            directory_version=directory.version,
            peers=[a.agency_id for a in directory.agencies if a.agency_id != self.core.agency],
        )


class DirectorySync(Periodic):
    """Asks peers for their directory now and then; adopts a newer one that verifies."""

    def __init__(self, core: NodeCore, peers: PeerChannels, every: float, timeout: float) -> None:
        super().__init__("mlax-dirsync", every, "directory_sync_failed")
        self.core, self.peers, self.timeout = core, peers, timeout

    def tick(self) -> None:
        self.sync_once()

    def sync_once(self) -> None:
        from exchange._proto.mlax.v1 import federation_pb2_grpc as fgrpc

        current = self.core.directory.current()
        for card in current.agencies:
            if card.agency_id == self.core.agency:
                continue
            try:
                stub = fgrpc.FederationStub(self.peers.channel(card.agency_id))
                resp = stub.GetDirectory(
                    fpb.GetDirectoryRequest(have_version=current.version), timeout=self.timeout
                )
            except (grpc.RpcError, MlaxError):
                continue
            if not resp.signed_directory:
                continue
            try:
                verify_directory(resp.signed_directory, current, now_ms())
                current = self.core.directory.install(resp.signed_directory, card.agency_id)
                metrics.DIRECTORY_VERSION.labels(source="peer").inc()
                log.info("directory_adopted", version=current.version, source=card.agency_id)
            except MlaxError as e:
                log.warning(
                    "directory_offer_refused", source=card.agency_id, reason=type(e).__name__
                )


def _server(
    listener: Any, handlers: list[grpc.GenericRpcHandler], max_bytes: int, limiter: CallLimiter
) -> grpc.Server:
    options: list[tuple[str, Any]] = [
        *channel_options(max_bytes),
        ("grpc.so_reuseport", 1 if listener.reuse_port else 0),
    ]
    # A stream holds its thread until it ends: the limiter admits at most max_streams of
    # them, and they get threads of their own, so max_workers are always left for unary
    # calls and health checks (docs/adr/0009-bounded-resources.md).
    threads = listener.max_workers + limiter.limits.max_streams
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mlax-rpc"),
        handlers=handlers,
        # Outermost: every call's errors, including other interceptors' refusals.
        interceptors=[ErrorInterceptor(), limiter],
        options=options,
        maximum_concurrent_rpcs=listener.max_concurrent_rpcs,
    )
    return server


def _add_health_and_reflection(server: grpc.Server, service: str) -> health.HealthServicer:
    status = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    status.set(service, health_pb2.HealthCheckResponse.SERVING)
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (service, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    return status


def _bind(server: grpc.Server, key: str, address: str, creds: grpc.ServerCredentials) -> None:
    try:
        server.add_secure_port(address, creds)
    except RuntimeError:
        # With SO_REUSEPORT off, grpc refuses an address another process holds.
        raise ConfigError(f"{key} {address} is in use or cannot be bound.") from None


def expiry_times(identity: AgencyIdentity, trust: TrustedDirectory) -> dict[str, int]:
    """Unix ms at which each thing this node depends on stops being valid."""
    card = trust.current().agency(identity.agency_id) or identity.card
    now = now_ms()

    def last(keys: tuple[PublicKey, ...]) -> int:
        live = [k.not_after for k in keys if card.revocation(k.key_id) is None and k.valid_at(now)]
        return max(live, default=now)

    return {
        "tls_certificate": identity.tls_certificate_not_after,
        "directory": trust.current().expires_at,
        "signing_key": last(card.signing_keys),
        "encryption_key": last(card.encryption_keys),
    }


def warn_expiry(identity: AgencyIdentity, trust: TrustedDirectory, days: int = 30) -> None:
    """Log a warning for anything that expires within `days`: operators must act first."""
    now = now_ms()
    for what, at in expiry_times(identity, trust).items():
        if at - now < days * 86_400_000:
            log.warning("expires_soon", what=what, days_left=round((at - now) / 86_400_000, 1))


def run(cfg: NodeConfig, passphrase: bytes, stop: threading.Event | None = None) -> None:
    """Run a node until SIGTERM/SIGINT (or `stop`), then shut down gracefully."""
    bound_buffer_memory()
    identity = load_identity(cfg.node.identity_dir, passphrase)
    if identity.agency_id != cfg.node.agency:
        raise ConfigError(
            f"node.agency is {cfg.node.agency} but the identity in {cfg.node.identity_dir} "
            f"is {identity.agency_id}."
        )
    # The data dir 0700, the database and its -wal/-shm 0600, however they were made.
    private = private_dir(cfg.node.data_dir)
    db = Database(cfg.database_url, cfg.storage.pool_size)
    for path in [cfg.node.data_dir] * (private is True) + db.tightened:
        log.warning("permissions_tightened", path=str(path))
    for path in [cfg.node.data_dir] * (private is None) + db.too_open:
        log.warning("permissions_too_open", path=str(path), reason="owned by another user")
    db.migrate()
    trust = TrustedDirectory(db)
    directory = trust.current()
    if directory.agency(identity.agency_id) is None:
        raise ConfigError(f"Agency {identity.agency_id} is not in the installed directory.")
    limits = Limits(max_envelope_bytes=cfg.limits.max_message_bytes - 1024)
    core = NodeCore(identity, db, trust, limits, cfg.delivery.default_ttl_seconds * 1000)
    core.rejections = RejectionLedger(
        db, cfg.ledger.rejections_per_window, cfg.ledger.rejection_window_seconds
    )
    ca = OfficerCA.load_or_create(cfg.node.data_dir, identity.agency_id, passphrase)
    peers = PeerChannels(identity, trust, cfg.limits.max_message_bytes)
    worker = DeliveryWorker(core, peers, cfg.delivery)
    store = LedgerStore(db, log_origin(directory.federation_id, identity.agency_id))
    checkpointer = Checkpointer(
        core,
        store,
        peers,
        interval=cfg.ledger.checkpoint_interval_seconds,
        every_entries=cfg.ledger.checkpoint_every_entries,
        witness_interval=cfg.ledger.witness_interval_seconds,
        timeout=cfg.delivery.rpc_timeout_seconds,
    )
    sync = DirectorySync(
        core, peers, cfg.delivery.directory_sync_seconds, cfg.delivery.rpc_timeout_seconds
    )
    cases = CaseDesk(core, cfg.cases)
    attachments = AttachmentDesk(core, LocalBlobStore(cfg.attachments_dir), cases)
    pusher = AttachmentPusher(attachments, peers, cfg.delivery.rpc_timeout_seconds)
    clocks = ClockWatch(cases, cfg.cases.clock_check_seconds)
    matching = MatchDesk(core, cfg.matching, peers, cases)
    match_sync = MatchSync(
        matching, cfg.matching.sync_interval_seconds, cfg.matching.sync_timeout_seconds
    )

    own_pair = [(identity.tls_private_key_pem(), identity.tls_certificate_pem())]

    def federation_roots() -> bytes:
        return b"".join(a.tls_certificate_pem for a in trust.current().agencies)

    roots = [federation_roots()]

    def fetch_config() -> grpc.ServerCertificateConfiguration | None:
        # Called on each new handshake: admit the peers of the newest directory.
        latest = federation_roots()
        if latest == roots[0]:
            return None
        roots[0] = latest
        return grpc.ssl_server_certificate_configuration(own_pair, latest)

    fed_creds = grpc.dynamic_ssl_server_credentials(
        grpc.ssl_server_certificate_configuration(own_pair, roots[0]),
        fetch_config,  # type: ignore[arg-type]  # grpc accepts None for "unchanged"
        True,
    )
    max_bytes = cfg.limits.max_message_bytes
    fed_limiter = CallLimiter(
        "federation", ListenerLimits.for_peers(cfg.limits), peer_callers(trust.current)
    )
    off_limiter = CallLimiter(
        "officer", ListenerLimits.for_officers(cfg.limits), officer_callers(db)
    )
    fed = _server(
        cfg.federation,
        [FederationService(core, store, attachments, matching).handler()],
        max_bytes,
        fed_limiter,
    )
    fed_health = _add_health_and_reflection(fed, FEDERATION_SERVICE)
    _bind(fed, "federation.listen", cfg.federation.listen, fed_creds)
    off = _server(cfg.officer, [], max_bytes, off_limiter)
    ogrpc.add_OfficerServicer_to_server(
        OfficerService(
            core,
            store,
            peers,
            cfg.limits.max_watchers,
            cfg.delivery.rpc_timeout_seconds,
            cases,
            attachments,
            matching,
        ),
        off,
    )
    off_health = _add_health_and_reflection(off, OFFICER_SERVICE)
    _bind(
        off,
        "officer.listen",
        cfg.officer.listen,
        grpc.ssl_server_credentials(
            own_pair, root_certificates=ca.cert_pem, require_client_auth=True
        ),
    )
    if cfg.metrics.listen:
        host, _, port = cfg.metrics.listen.rpartition(":")
        try:
            start_http_server(int(port), addr=host)
        except OSError as e:
            raise ConfigError(
                f"metrics.listen {cfg.metrics.listen} cannot be bound: {e.strerror}."
            ) from None
        metrics.register_outbox(lambda: outbox_depth(core))
        metrics.register_expiry(lambda: expiry_times(identity, trust))
    warn_expiry(identity, trust)

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    fed_limiter.start()
    off_limiter.start()
    fed.start()
    off.start()
    worker.start()
    sync.start()
    checkpointer.start()
    pusher.start()
    clocks.start()
    match_sync.start()
    core.rejections.start()
    with db.write() as s:
        # The key ids the node runs with: a rotation or revocation shows in the ledger here,
        # and again when the directory publishing it is installed.
        ledger.append(
            s,
            LedgerEntry.of(
                "node.started",
                now_ms(),
                agency=identity.agency_id,
                signing_keys=",".join(sorted(identity.signing_keys)),
                encryption_keys=",".join(sorted(identity.decryption_keys)),
                tls_spki_sha256=identity.card.tls_spki_sha256.hex(),
            ),
        )
    log.info(
        "node_ready",
        agency=identity.agency_id,
        federation=cfg.federation.listen,
        officer=cfg.officer.listen,
        directory_version=directory.version,
    )
    stop.wait()
    log.info("node_stopping", agency=identity.agency_id)
    fed_health.enter_graceful_shutdown()
    off_health.enter_graceful_shutdown()
    # Finish calls in flight (a delivery being stored completes and is receipted).
    fed_done, off_done = fed.stop(grace=10), off.stop(grace=2)
    fed_done.wait()
    off_done.wait()
    fed_limiter.stop()
    off_limiter.stop()
    # The background threads stop together (each is bounded), then the delivery worker
    # records the outcomes of envelopes still on the wire.
    stops: list[Callable[[], None]] = [
        sync.stop,
        checkpointer.stop,
        clocks.stop,
        match_sync.stop,
        pusher.stop,
        core.rejections.stop,  # ledgers the counts of open windows
    ]
    stoppers = [threading.Thread(target=stop, name="mlax-stop") for stop in stops]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    worker.stop()
    peers.close()
    try:
        with db.write() as s:
            ledger.append(s, LedgerEntry.of("node.stopped", now_ms(), agency=identity.agency_id))
    except Exception as e:  # a full disk must not turn a clean stop into a crash
        log.error("node_stop_not_ledgered", storage_full=is_storage_full(e), **error_fields(e))
    db.close()
    log.info("node_stopped", agency=identity.agency_id)
