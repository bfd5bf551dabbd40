"""An in-process peer for unit tests of what a node does with its peers.

Modelled on python-tuf's RepositorySimulator: the code under test keeps its real
interface to the outside (`node.peers.client.PeerClient`), and the far side is simulated
in the same process. `SimPeer` is a `PeerClient` whose peers are `SimNode`s: real nodes
in-process (the real `NodeCore`, desks, ledger store and federation servicer over their
own SQLite copy of a template federation), minus the network and the threads. A call
goes to the peer's real `FederationService` method, as the calling agency (the servicer
names the caller from its pinned TLS certificate, as on the wire); requests and answers
cross as bytes, and an error becomes the `grpc.RpcError` the error interceptor would
have sent (`node.rpc.errors.to_status_error`). So a refusal is the peer's real refusal.

The network is scripted: `fail(peer, code)` makes the next call(s) to a peer end with a
status (a peer down, a timeout, a refusal), `down` holds agencies that answer
UNAVAILABLE to everything, and `calls` records every call made. `Deliver` and
`DeliverBatch` answer before `deliver` and `deliver_batch` return (the callback runs on
the caller's thread); a batch scripted to fail UNIMPLEMENTED (a peer of an earlier
version) is sent as one `Deliver` per envelope, as `GrpcPeerClient` does.

    made = federation_template()
    gb, ng = (SimNode(made, agency, tmp_path) for agency in (GB, NG))
    network = {GB: gb, NG: ng}      # the SimPeer of each node reaches the others here
    gb.connect(network); ng.connect(network)
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange._proto.mlax.v1 import federation_pb2 as fpb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.envelope import Limits
from exchange.errors import UnknownSenderError
from exchange.ledger.names import log_origin
from keys.identity import AgencyIdentity, load_identity
from node.config import CasesSection, DeliverySection, MatchingSection, load_config
from node.devtools.federation import build_federation
from node.peers.client import DeliverAnswer, PeerClient, batch_answers
from node.rpc.errors import to_status_error
from node.rpc.federation import FederationService
from node.services.cases import CaseDesk
from node.services.evidence import AttachmentDesk
from node.services.matching import MatchDesk
from node.services.messages import NodeCore, Officer
from node.services.trust import TrustedDirectory
from node.storage.blobs import LocalBlobStore
from node.storage.db import Database
from node.storage.ledger import LedgerStore
from node.workers.delivery import DeliveryWorker
from node.workers.wakeup import Wakeup

GB, NG = "GB-NCA", "NG-NAPTIP"
AGENCIES = ((GB, "National Crime Agency"), (NG, "NAPTIP"))
PASSPHRASE = b"sim-peer-test-passphrase"
M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)


# -- the template federation -------------------------------------------------------------


@dataclass
class Template:
    identities: dict[str, AgencyIdentity]
    databases: dict[str, Path]


@functools.cache
def federation_template() -> Template:
    """A two-agency federation's identities and freshly installed databases, made once
    per test process; each `SimNode` works on its own copy of its agency's database."""
    root = Path(tempfile.mkdtemp(prefix="mlax-sim-peer-template-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    fed = build_federation(root, PASSPHRASE, PASSPHRASE, agencies=AGENCIES)
    identities, databases = {}, {}
    for agency, setup in fed.nodes.items():
        cfg = load_config(setup.config)
        identities[agency] = load_identity(cfg.node.identity_dir, PASSPHRASE)
        databases[agency] = Path(cfg.database_url.removeprefix("sqlite:///"))
    return Template(identities, databases)


# -- what the wire would have said -------------------------------------------------------


class SimRpcError(grpc.RpcError, grpc.Call):
    """A call that ended with a status, as a gRPC stub raises it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


def status_error(exc: BaseException, method: str) -> SimRpcError:
    """The status the node's error interceptor answers `exc` with (node.rpc.errors)."""
    if isinstance(exc, SimRpcError):
        return exc
    error = to_status_error(exc, method)
    code = grpc.StatusCode.__members__.get(str(error.status), grpc.StatusCode.INTERNAL)
    return SimRpcError(code, error.message)


class _CallerContext:
    """What the federation servicer reads of a call's context: the caller's certificate."""

    def __init__(self, caller: AgencyIdentity) -> None:
        self._cert = caller.tls_certificate_pem()
        self._agency = caller.agency_id

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"x509_pem_cert": [self._cert]}

    def peer(self) -> str:
        return f"sim:{self._agency}"

    def is_active(self) -> bool:
        return True

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise SimRpcError(code, details)


# -- one node, in-process ----------------------------------------------------------------


class SimNode:
    """One agency's node in-process: core, case, attachment and matching desks, ledger
    store and federation servicer over its own copy of the template database, and a
    delivery worker (not started) whose peers are reached through `peers`."""

    def __init__(
        self,
        template: Template,
        agency: str,
        workdir: Path,
        delivery: DeliverySection | None = None,
    ) -> None:
        identity = template.identities[agency]
        path = workdir / f"{agency}.db"
        if not path.exists():  # a restarted node keeps its database
            shutil.copy(template.databases[agency], path)
        self.agency = agency
        self.identity = identity
        self.db = Database(f"sqlite:///{path}")
        self.outbox = Wakeup()
        self.core = NodeCore(
            identity,
            self.db,
            TrustedDirectory(self.db),
            Limits(),
            30 * 24 * 3600 * 1000,
            on_submit=self.outbox.notify,
        )
        directory = self.core.directory.current()
        self.store = LedgerStore(self.db, log_origin(directory.federation_id, agency))
        self.cases = CaseDesk(self.core, CasesSection(approval_required="none"))
        self.pushes = Wakeup()  # for an evidence pusher a test may run
        self.attachments = AttachmentDesk(
            self.core,
            LocalBlobStore(workdir / f"{agency}-blobs"),
            self.cases,
            on_push_due=self.pushes.notify,
        )
        self.peers = SimPeer(identity, self.core.directory)
        self.matching = MatchDesk(self.core, MatchingSection(), self.peers, self.cases)
        self.federation = FederationService(self.core, self.store, self.attachments, self.matching)
        self.worker = DeliveryWorker(
            self.core, self.peers, delivery or DeliverySection(), self.outbox
        )
        self.core.fast_lane = self.worker  # as node.server wires it
        self.officer = Officer(name=f"{agency.lower()}-officer", role="officer")
        self._running = False

    def connect(self, network: Mapping[str, SimNode]) -> None:
        """Reach the other nodes of `network` (looked up at each call)."""
        self.peers.nodes = network

    def start(self) -> None:
        """Start the delivery worker's thread."""
        self.worker.start()
        self._running = True

    def close(self) -> None:
        if self._running:
            self.worker.stop()
            self._running = False
        self.db.close()


# -- the peer client ---------------------------------------------------------------------


@dataclass(frozen=True)
class SimCall:
    peer: str
    method: str
    timeout: float


@dataclass
class _Fault:
    code: grpc.StatusCode
    detail: str
    method: str | None
    times: int


class SimPeer:
    """`PeerClient` for `caller`, reaching the `SimNode`s of `nodes` in-process.

    `directory` is the caller's: a peer that is not in it is refused before anything is
    sent (`UnknownSenderError`), as by `PeerChannels`. A peer in it with no node in
    `nodes` answers UNAVAILABLE, as one that is not running.
    """

    def __init__(
        self,
        caller: AgencyIdentity,
        directory: TrustedDirectory,
        nodes: Mapping[str, SimNode] | None = None,
    ) -> None:
        self.caller = caller
        self.directory = directory
        self.nodes: Mapping[str, SimNode] = nodes or {}
        self.down: set[str] = set()
        self.calls: list[SimCall] = []
        self._faults: dict[str, list[_Fault]] = {}

    def fail(
        self,
        peer: str,
        code: grpc.StatusCode,
        *,
        times: int = 1,
        method: str | None = None,
        detail: str = "scripted by the test",
    ) -> None:
        """The next `times` calls to `peer` (of `method`, or any) end with `code`."""
        self._faults.setdefault(peer, []).append(_Fault(code, detail, method, times))

    def calls_to(self, peer: str, method: str) -> int:
        return sum(1 for c in self.calls if (c.peer, c.method) == (peer, method))

    # -- PeerClient -----------------------------------------------------------------------

    def deliver(
        self,
        peer: str,
        envelope: epb.Envelope,
        timeout: float,
        done: Callable[[DeliverAnswer], None],
    ) -> None:
        node = self._reach(peer, "Deliver", timeout)
        try:
            service = self._admit(peer, "Deliver", node)
            receipt = service.deliver(envelope.SerializeToString(), self._context())
            answer = DeliverAnswer(_copy(receipt))
        except Exception as e:
            error = status_error(e, "/mlax.v1.Federation/Deliver")
            answer = DeliverAnswer(None, error.code(), error.details())
        done(answer)

    def deliver_batch(
        self,
        peer: str,
        envelopes: Sequence[bytes],
        timeout: float,
        done: Callable[[list[DeliverAnswer]], None],
    ) -> None:
        node = self._reach(peer, "DeliverBatch", timeout)
        try:
            service = self._admit(peer, "DeliverBatch", node)
            request = fpb.DeliverBatchRequest(envelopes=list(envelopes)).SerializeToString()
            response = _copy(service.deliver_batch(request, self._context()))
            answers = batch_answers(response, len(envelopes))
        except Exception as e:
            error = status_error(e, "/mlax.v1.Federation/DeliverBatch")
            if error.code() == grpc.StatusCode.UNIMPLEMENTED:
                # A peer of an earlier version: one Deliver per envelope, as GrpcPeerClient.
                answers = []
                for data in envelopes:
                    self.deliver(peer, epb.Envelope.FromString(data), timeout, answers.append)
            else:
                answers = [DeliverAnswer(None, error.code(), error.details())] * len(envelopes)
        done(answers)

    def get_directory(
        self, peer: str, request: fpb.GetDirectoryRequest, timeout: float
    ) -> fpb.GetDirectoryResponse:
        return self._unary(peer, "GetDirectory", timeout, request, lambda f: f.get_directory)

    def get_inclusion_proof(
        self, peer: str, request: lpb.InclusionProofRequest, timeout: float
    ) -> lpb.InclusionProofResponse:
        return self._unary(
            peer, "GetInclusionProof", timeout, request, lambda f: f.get_inclusion_proof
        )

    def get_entries(
        self, peer: str, request: lpb.GetEntriesRequest, timeout: float
    ) -> lpb.GetEntriesResponse:
        return self._unary(peer, "GetEntries", timeout, request, lambda f: f.get_entries)

    def add_checkpoint(
        self, peer: str, request: lpb.AddCheckpointRequest, timeout: float
    ) -> lpb.AddCheckpointResponse:
        return self._unary(peer, "AddCheckpoint", timeout, request, lambda f: f.add_checkpoint)

    def attachment_status(
        self, peer: str, request: apb.AttachmentStatusRequest, timeout: float
    ) -> apb.AttachmentProgress:
        return self._unary(
            peer, "AttachmentStatus", timeout, request, lambda f: f.attachment_status
        )

    def push_attachment(
        self, peer: str, chunks: Iterator[apb.AttachmentChunk], timeout: float
    ) -> apb.AttachmentProgress:
        node = self._reach(peer, "PushAttachment", timeout)
        try:
            service = self._admit(peer, "PushAttachment", node)
            return _copy(service.push_attachment((_copy(c) for c in chunks), self._context()))
        except Exception as e:
            raise status_error(e, "/mlax.v1.Federation/PushAttachment") from None

    def match_evaluate(
        self, peer: str, request: mpb.MatchEvaluateRequest, timeout: float
    ) -> mpb.MatchEvaluateResponse:
        return self._unary(peer, "MatchEvaluate", timeout, request, lambda f: f.match_evaluate)

    def get_match_index(
        self, peer: str, request: mpb.MatchIndexRequest, timeout: float
    ) -> Iterator[mpb.MatchIndexChunk]:
        node = self._reach(peer, "GetMatchIndex", timeout)

        def stream() -> Iterator[mpb.MatchIndexChunk]:
            # As on the wire, the status of a stream shows when it is read.
            try:
                service = self._admit(peer, "GetMatchIndex", node)
                for chunk in service.get_match_index(_copy(request), self._context()):
                    yield _copy(chunk)
            except Exception as e:
                raise status_error(e, "/mlax.v1.Federation/GetMatchIndex") from None

        return stream()

    # -- the simulated wire ---------------------------------------------------------------

    def _context(self) -> Any:
        return _CallerContext(self.caller)

    def _reach(self, peer: str, method: str, timeout: float) -> SimNode | None:
        self.calls.append(SimCall(peer, method, timeout))
        if self.directory.current().agency(peer) is None:
            raise UnknownSenderError(f"Agency {peer} is not a member of the federation.")
        return self.nodes.get(peer)

    def _admit(self, peer: str, method: str, node: SimNode | None) -> FederationService:
        """The peer's servicer, unless the call ends first: no node running, the peer
        down, or a fault scripted for this call."""
        if node is None:
            raise SimRpcError(grpc.StatusCode.UNAVAILABLE, f"no node of {peer} is running")
        if peer in self.down:
            raise SimRpcError(grpc.StatusCode.UNAVAILABLE, f"{peer} is down")
        faults = self._faults.get(peer, [])
        for fault in faults:
            if fault.method in (None, method):
                fault.times -= 1
                if fault.times <= 0:
                    faults.remove(fault)
                raise SimRpcError(fault.code, fault.detail)
        return node.federation

    def _unary(
        self,
        peer: str,
        method: str,
        timeout: float,
        request: M,
        handler: Callable[[FederationService], Callable[[M, Any], R]],
    ) -> R:
        node = self._reach(peer, method, timeout)
        try:
            service = self._admit(peer, method, node)
            return _copy(handler(service)(_copy(request), self._context()))
        except Exception as e:
            raise status_error(e, f"/mlax.v1.Federation/{method}") from None


# -- helpers for tests --------------------------------------------------------------------


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def submit_note(node: SimNode, to: str, subject: str) -> str:
    """An officer of `node` sends a note to `to`; its message id."""
    summary = node.core.submit(
        node.officer,
        opb.SubmitRequest(
            recipient=to,
            message_type=epb.MESSAGE_TYPE_NOTE,
            content=opb.Content(subject=subject, text="Meet at the port at six."),
        ),
    )
    return summary.message_id


# What the `sim_network` fixture (tests/node/conftest.py) gives a test: call it (with a
# DeliverySection, optionally) for GB's and NG's nodes, each reaching the other.
MakeNetwork = Callable[..., dict[str, SimNode]]


def _copy(message: M) -> M:
    """The message as the other side gets it: serialized and parsed again."""
    return type(message).FromString(message.SerializeToString())


def _is_a_peer_client(peer: SimPeer) -> PeerClient:
    return peer  # mypy checks that SimPeer has every method of PeerClient
