"""The node process: federation and officer gRPC listeners, delivery worker, metrics."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc
from prometheus_client import start_http_server

from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange._proto.mlax.v1.statistics_pb2_grpc import add_StatisticsServicer_to_server
from exchange.agency import PublicKey
from exchange.encoding import now_ms
from exchange.envelope import Limits
from exchange.ledger.names import log_origin
from exchange.ledger_entry import LedgerEntry
from keys.identity import AgencyIdentity, load_identity
from node import metrics
from node.config import ConfigError, NodeConfig
from node.health import READINESS_SERVICE
from node.logs import error_fields
from node.peers.channels import SWITCH_SYNC_PERIODS, OwnCertificate, PeerChannels
from node.peers.client import GrpcPeerClient
from node.rpc.errors import (
    ErrorInterceptor,
    is_storage_full,
)
from node.rpc.federation import FEDERATION_SERVICE, FederationService
from node.rpc.limits import CallLimiter, ListenerLimits, officer_callers, peer_callers
from node.rpc.officer import OFFICER_SERVICE, OfficerService
from node.rpc.stats import StatsService
from node.services.cases import CaseDesk
from node.services.evidence import AttachmentDesk
from node.services.matching import MatchDesk
from node.services.messages import NodeCore
from node.services.officers import OfficerCA, OfficerIssuer
from node.services.rejections import RejectionLedger
from node.services.retention import RetentionDesk, record_remover
from node.services.stats import StatsDesk
from node.services.trust import TrustedDirectory
from node.storage import ledger
from node.storage.blobs import open_blob_store
from node.storage.db import Database, private_dir
from node.storage.ledger import LedgerStore
from node.transport import bound_buffer_memory, channel_options
from node.workers.checkpoints import Checkpointer
from node.workers.clocks import ClockWatch
from node.workers.delivery import DeliveryWorker, outbox_depth
from node.workers.directory_sync import DirectorySync
from node.workers.evidence_push import AttachmentPusher
from node.workers.matching_sync import MatchSync
from node.workers.purge import PurgeJob
from node.workers.readiness import ReadinessCheck
from node.workers.wakeup import Wakeup

log = structlog.get_logger("mlax.node")


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
    # Liveness: "" and the listener's own service answer SERVING while the process serves.
    # Readiness: READINESS_SERVICE, set by the readiness check (node/workers/readiness.py).
    status.set(service, health_pb2.HealthCheckResponse.SERVING)
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    status.set(READINESS_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    _enable_reflection(server, (service, health.SERVICE_NAME))
    return status


# Current grpcurl and grpc-js ask reflection under its stable name; grpcio-reflection
# serves only v1alpha. The two protos are the same messages under another package, so one
# servicer answers both, the v1 method decoding and encoding with the v1alpha classes.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _enable_reflection(server: grpc.Server, services: tuple[str, ...]) -> None:
    servicer = reflection.ReflectionServicer((*services, reflection.SERVICE_NAME, REFLECTION_V1))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                REFLECTION_V1,
                {
                    "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
                        servicer.ServerReflectionInfo,
                        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
                        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
                    )
                },
            ),
        )
    )


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
        "tls_certificate": identity.tls_valid_until,  # a renewal's next one counts
        "directory": trust.current().expires_at,
        "signing_key": last(card.signing_keys),
        "encryption_key": last(card.encryption_keys),
    }


def warn_expiry(identity: AgencyIdentity, trust: TrustedDirectory, days: int = 30) -> None:
    """Log a warning for anything that expires within `days`: operators must act first."""
    now = now_ms()
    for what, at in expiry_times(identity, trust).items():
        if at - now < days * 86_400_000:
            log.warning(
                "expires_soon",
                what=what,
                days_left=round((at - now) / 86_400_000, 1),
                **({"action": "mlax keys renew-tls"} if what == "tls_certificate" else {}),
            )


# How often the main thread looks for a stop signal or request.
_STOP_POLL_SECONDS = 0.2


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
    # The loops that can be woken get their wake-up here, and its producers its `notify`:
    # the core rings the delivery worker on each submission, the attachment desk rings
    # the evidence pusher when an evidence envelope is receipted.
    outbox, pushes = Wakeup(), Wakeup()
    core = NodeCore(
        identity,
        db,
        trust,
        limits,
        cfg.delivery.default_ttl_seconds * 1000,
        on_submit=outbox.notify,
    )
    core.rejections = RejectionLedger(
        db, cfg.ledger.rejections_per_window, cfg.ledger.rejection_window_seconds
    )
    ca = OfficerCA.load_or_create(cfg.node.data_dir, identity.agency_id, passphrase)
    # The TLS certificate we present: during a renewal, the next one once peers accept it.
    own_tls = OwnCertificate(
        identity, trust.current, SWITCH_SYNC_PERIODS * cfg.delivery.directory_sync_seconds
    )
    channels = PeerChannels(identity, trust, cfg.limits.max_message_bytes, own_tls)
    peers = GrpcPeerClient(channels)
    worker = DeliveryWorker(core, peers, cfg.delivery, outbox)
    core.fast_lane = worker
    store = LedgerStore(db, log_origin(directory.federation_id, identity.agency_id))
    checkpointer = Checkpointer(
        core,
        store,
        peers,
        interval=cfg.ledger.checkpoint_interval_seconds,
        every_entries=cfg.ledger.checkpoint_every_entries,
        witness_interval=cfg.ledger.witness_interval_seconds,
        witnesses=cfg.ledger.witnesses_per_checkpoint,
        timeout=cfg.delivery.rpc_timeout_seconds,
    )
    sync = DirectorySync(
        core, peers, cfg.delivery.directory_sync_seconds, cfg.delivery.rpc_timeout_seconds
    )
    cases = CaseDesk(core, cfg.cases)
    attachments = AttachmentDesk(
        core,
        open_blob_store(
            cfg.storage.blob_backend, cfg.attachments_dir, cfg.database_url, cfg.storage.pool_size
        ),
        cases,
        on_push_due=pushes.notify,
    )
    pusher = AttachmentPusher(
        attachments,
        peers,
        cfg.delivery.rpc_timeout_seconds,
        pushes,
        interval=cfg.delivery.poll_interval_seconds,
    )
    clocks = ClockWatch(cases, cfg.cases.clock_check_seconds)
    matching = MatchDesk(core, cfg.matching, peers, cases)
    match_sync = MatchSync(
        matching, cfg.matching.sync_interval_seconds, cfg.matching.sync_timeout_seconds
    )
    retention = RetentionDesk(db, attachments.blobs, cfg.retention, record_remover(matching))
    purge = PurgeJob(retention, cfg.retention.purge_interval_seconds)

    own_pair = [(identity.tls_private_key_pem(), identity.tls_certificate_pem())]

    def federation_tls() -> tuple[bytes, bytes, bytes]:
        # Every certificate the directory accepts (a renewal's next one too), and ours.
        roots = b"".join(pem for a in trust.current().agencies for pem in a.tls_certificates)
        return (*own_tls.pair(), roots)

    served = [federation_tls()]

    def tls_config(tls: tuple[bytes, bytes, bytes]) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(tls[0], tls[1])], tls[2])

    def fetch_config() -> grpc.ServerCertificateConfiguration | None:
        # Called on each new handshake: admit the peers of the newest directory, and
        # present our next certificate once it is due, with no restart.
        latest = federation_tls()
        if latest == served[0]:
            return None
        served[0] = latest
        return tls_config(latest)

    fed_creds = grpc.dynamic_ssl_server_credentials(
        tls_config(served[0]),
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
        [
            FederationService(
                core, store, attachments, matching, cfg.limits.max_deliver_batch
            ).handler()
        ],
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
            OfficerIssuer(
                ca,
                identity.agency_id,
                cfg.officer.advertise or cfg.officer.listen,
                identity.tls_certificate_pem(),
                identity.card.next_tls_certificate_pem,
            ),
        ),
        off,
    )
    add_StatisticsServicer_to_server(StatsService(StatsDesk(core, cfg.statistics, cfg.cases)), off)
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
    # The signal handler only flips a flag: it runs in the main thread between bytecodes,
    # and an `Event.set()` there could wait on the lock its own thread holds. The main
    # thread polls below instead of blocking in `stop.wait()`: a SIGTERM the kernel hands
    # to another of the node's threads never interrupts a blocked wait, and a node of a
    # 37-node test slept through one until it was killed.
    signalled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: signalled.append(signum))

    fed_limiter.start()
    off_limiter.start()
    readiness = ReadinessCheck(
        cfg.health,
        db,
        trust,
        identity,
        [cfg.node.data_dir] + [cfg.attachments_dir] * (cfg.storage.blob_backend == "filesystem"),
        (fed_health, off_health),
    )
    readiness.tick()  # ready or not from the first call on
    fed.start()
    off.start()
    worker.start()
    sync.start()
    checkpointer.start()
    pusher.start()
    clocks.start()
    match_sync.start()
    matching.start()  # retires old key generations; rotates on a new token domain
    purge.start()
    readiness.start()
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
    while not (signalled or stop.is_set()):
        time.sleep(_STOP_POLL_SECONDS)
    log.info("node_stopping", agency=identity.agency_id)
    fed_health.enter_graceful_shutdown()
    off_health.enter_graceful_shutdown()
    # Finish calls in flight (a delivery being stored completes and is receipted).
    fed_done = fed.stop(grace=cfg.node.federation_shutdown_grace_seconds)
    off_done = off.stop(grace=cfg.node.officer_shutdown_grace_seconds)
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
        matching.close,  # a rotation under way is undone; the encoding workers end
        purge.stop,
        readiness.stop,
        pusher.stop,
        core.rejections.stop,  # ledgers the counts of open windows
    ]
    stoppers = [threading.Thread(target=stop, name="mlax-stop") for stop in stops]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    worker.stop()
    channels.close()
    try:
        with db.write() as s:
            ledger.append(s, LedgerEntry.of("node.stopped", now_ms(), agency=identity.agency_id))
    except Exception as e:  # a full disk must not turn a clean stop into a crash
        log.error("node_stop_not_ledgered", storage_full=is_storage_full(e), **error_fields(e))
    db.close()
    log.info("node_stopped", agency=identity.agency_id)
