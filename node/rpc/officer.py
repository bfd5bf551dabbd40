"""The officer service (`mlax.v1.Officer`): the agency's own officers, supervisors, auditors.

Each method parses nothing itself (node.rpc.errors parses every request), names the
roles that may call it once (`@allow`), receives the authenticated `Officer` from the
one authorization point (node.rpc.auth), calls a service and returns its answer.
docs/protocol.md 11.7 publishes the role table; tests/node/rpc/test_rpc_auth.py checks
that it equals the declarations here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import structlog

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.encoding import format_uuid
from exchange.errors import ConflictError, MlaxError
from exchange.policy import Role
from node.peers.client import PeerClient
from node.rpc.auth import OfficerAuth, allow, declared_roles, enforce_roles
from node.rpc.errors import BusyError
from node.rpc.limits import client_certificate
from node.services import match_disclosure
from node.services.cases import CaseDesk
from node.services.delivery_proof import delivery_proof
from node.services.evidence import AttachmentDesk
from node.services.forwarding import forward
from node.services.ledger_view import LedgerView
from node.services.matching import MatchDesk
from node.services.messages import NodeCore, Officer, summary
from node.services.officers import (
    OfficerAccount,
    OfficerIssuer,
    issue_from_csr,
    list_accounts,
    set_officer,
)
from node.services.retention import place_hold, release_hold
from node.storage.ledger import LedgerStore

log = structlog.get_logger("mlax.node")

OFFICER_SERVICE = "mlax.v1.Officer"
DESCRIPTOR = opb.DESCRIPTOR.services_by_name["Officer"]

# The roles that may call most methods: those that see content, and those that also audit.
CONTENT = (Role.OFFICER, Role.SUPERVISOR)
READERS = (Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR)


@enforce_roles(DESCRIPTOR)
class OfficerService(ogrpc.OfficerServicer):
    """Officer calls: each is authorized by node.rpc.auth before its body runs."""

    def __init__(
        self,
        core: NodeCore,
        store: LedgerStore,
        peers: PeerClient,
        max_watchers: int,
        timeout: float,
        cases: CaseDesk,
        attachments: AttachmentDesk,
        matching: MatchDesk,
        issuer: OfficerIssuer,
    ) -> None:
        self.auth = OfficerAuth.for_db(declared_roles(OfficerService), core.db)
        self.issuer = issuer
        self.core = core
        self.store = store
        self.ledger = LedgerView(core, store)
        self.peers = peers
        self.timeout = timeout
        self.cases = cases
        self.attachments = attachments
        self.matching = matching
        self._watchers = threading.BoundedSemaphore(max_watchers)

    # -- messages ----------------------------------------------------------------------

    @allow(*CONTENT)
    def Submit(
        self, officer: Officer, request: opb.SubmitRequest, context: grpc.ServicerContext
    ) -> opb.MessageSummary:
        result = self.core.submit(officer, request)
        log.info("submitted", officer=officer.name, message_id=result.message_id, peer=result.peer)
        return result

    @allow(*READERS)
    def ListMessages(
        self, officer: Officer, request: opb.ListMessagesRequest, context: grpc.ServicerContext
    ) -> opb.ListMessagesResponse:
        return self.core.list_messages(request)

    @allow(*READERS)
    def GetMessage(
        self, officer: Officer, request: opb.GetMessageRequest, context: grpc.ServicerContext
    ) -> opb.MessageView:
        return self.core.get(officer, request)

    @allow(*CONTENT)
    def Watch(
        self, officer: Officer, request: opb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[opb.MessageSummary]:
        if not self._watchers.acquire(blocking=False):
            raise BusyError("Too many watchers on this node.")
        try:
            cursor = self.core.inbound_cursor(request.after_message_id)
            while context.is_active():
                # A deactivated or demoted officer's stream ends at the next wake.
                self.auth.authorize(context, "Watch")
                rows = self.core.inbound_after(cursor)
                for row in rows:
                    cursor = row.id
                    yield summary(row)
                if not rows:
                    with self.core.inbound:
                        self.core.inbound.wait(timeout=1.0)
        finally:
            self._watchers.release()

    @allow(*CONTENT)
    def Forward(
        self, officer: Officer, request: cpb.ForwardRequest, context: grpc.ServicerContext
    ) -> opb.MessageSummary:
        new_id = forward(self.core, officer, request.message_id, request.recipient, request.note)
        return self.core.get(officer, opb.GetMessageRequest(message_id=format_uuid(new_id))).summary

    @allow(*READERS)
    def GetDeliveryProof(
        self, officer: Officer, request: opb.DeliveryProofRequest, context: grpc.ServicerContext
    ) -> opb.DeliveryProof:
        return delivery_proof(self.core, self.peers, request.message_id, self.timeout)

    @allow(Role.OFFICER, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
    def WhoAmI(
        self, officer: Officer, request: opb.WhoAmIRequest, context: grpc.ServicerContext
    ) -> opb.WhoAmIResponse:
        directory = self.core.directory.current()
        return opb.WhoAmIResponse(
            officer=officer.name,
            role=officer.role,
            agency=self.core.agency,
            directory_version=directory.version,
            peers=[a.agency_id for a in directory.agencies if a.agency_id != self.core.agency],
            server_certificates=self.issuer.server_certificates(),
        )

    # -- officer administration (admins; the node host's `mlax officer` does the same) ----

    @allow(Role.ADMIN)
    def ListOfficers(
        self, officer: Officer, request: opb.ListOfficersRequest, context: grpc.ServicerContext
    ) -> opb.ListOfficersResponse:
        accounts = list_accounts(self.core.db, by=officer.name)
        return opb.ListOfficersResponse(officers=[_account(a) for a in accounts])

    @allow(Role.ADMIN)
    def IssueOfficer(
        self, officer: Officer, request: opb.IssueOfficerRequest, context: grpc.ServicerContext
    ) -> opb.IssueOfficerResponse:
        account, cert_pem = issue_from_csr(
            self.core.db,
            self.issuer,
            name=request.name,
            role=request.role,
            csr_der=request.csr,
            days=request.days,
            by=officer.name,
        )
        log.info("officer_issued", by=officer.name, officer=account.name, role=account.role)
        return opb.IssueOfficerResponse(
            officer=_account(account),
            agency=self.issuer.agency,
            endpoint=self.issuer.endpoint,
            server_certificate=self.issuer.server_cert_pem,
            certificate=cert_pem,
        )

    @allow(Role.ADMIN)
    def SetOfficerRole(
        self, officer: Officer, request: opb.SetOfficerRoleRequest, context: grpc.ServicerContext
    ) -> opb.OfficerAccount:
        account = set_officer(self.core.db, request.name, role=request.role, by=officer.name)
        log.info("officer_changed", by=officer.name, officer=account.name, role=account.role)
        return _account(account)

    @allow(Role.ADMIN)
    def SetOfficerActive(
        self,
        officer: Officer,
        request: opb.SetOfficerActiveRequest,
        context: grpc.ServicerContext,
    ) -> opb.OfficerAccount:
        account = set_officer(self.core.db, request.name, active=request.active, by=officer.name)
        log.info("officer_changed", by=officer.name, officer=account.name, active=account.active)
        return _account(account)

    # -- the audit ledger --------------------------------------------------------------

    @allow(Role.AUDITOR)
    def ExportLedger(
        self, officer: Officer, request: opb.ExportLedgerRequest, context: grpc.ServicerContext
    ) -> Iterator[lpb.LedgerExportRecord]:
        yield from self.ledger.export(officer, request.start, request.end)

    # -- casework ----------------------------------------------------------------------

    def _case_view(self, officer: Officer, case_ref: str, content: bool = False) -> cpb.CaseView:
        return self.cases.view(officer, case_ref, content, self.attachments.list_for_case)

    @allow(*CONTENT)
    def CreateCase(
        self, officer: Officer, request: cpb.CreateCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        ref = self.cases.create(officer, request)
        log.info("case_created", officer=officer.name, case_ref=ref)
        return self._case_view(officer, ref)

    @allow(*CONTENT)
    def CaseAction(
        self, officer: Officer, request: cpb.CaseActionRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        ref = self.cases.act(officer, request)
        return self._case_view(officer, ref)

    # Four-eyes: a supervisor approves; CaseDesk refuses the draft's own author.
    @allow(Role.SUPERVISOR)
    def ApproveCase(
        self, officer: Officer, request: cpb.ApproveCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        ref = self.cases.approve(officer, request, client_certificate(context) or b"")
        return self._case_view(officer, ref)

    @allow(*READERS)
    def ListCases(
        self, officer: Officer, request: cpb.ListCasesRequest, context: grpc.ServicerContext
    ) -> cpb.ListCasesResponse:
        return self.cases.list_cases(officer, request)

    @allow(*READERS)
    def GetCase(
        self, officer: Officer, request: cpb.GetCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        return self._case_view(officer, request.case_ref, request.include_content)

    # -- legal hold: a held case is exempt from purge (node/services/retention.py) -----

    @allow(Role.SUPERVISOR)
    def HoldCase(
        self, officer: Officer, request: opb.HoldCaseRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        place_hold(self.core.db, officer, request.case_ref, request.reason)
        return self._case_view(officer, request.case_ref)

    @allow(Role.SUPERVISOR)
    def ReleaseHold(
        self, officer: Officer, request: opb.ReleaseHoldRequest, context: grpc.ServicerContext
    ) -> cpb.CaseView:
        release_hold(self.core.db, officer, request.case_ref)
        return self._case_view(officer, request.case_ref)

    # -- evidence ----------------------------------------------------------------------

    @allow(*CONTENT)
    def Upload(
        self,
        officer: Officer,
        request_iterator: Iterator[apb.UploadPart],
        context: grpc.ServicerContext,
    ) -> apb.UploadStatus:
        return self.attachments.upload(officer, request_iterator)

    @allow(*CONTENT)
    def GetUpload(
        self, officer: Officer, request: apb.GetUploadRequest, context: grpc.ServicerContext
    ) -> apb.UploadStatus:
        return self.attachments.upload_status(officer, request.upload_id)

    @allow(*CONTENT)
    def Download(
        self, officer: Officer, request: apb.DownloadRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.DownloadPart]:
        yield from self.attachments.download(officer, request)

    # -- victim identification ---------------------------------------------------------

    @allow(*CONTENT)
    def LoadRecords(
        self,
        officer: Officer,
        request_iterator: Iterator[mpb.LoadRecordsRequest],
        context: grpc.ServicerContext,
    ) -> mpb.LoadRecordsResponse:
        return self.matching.load(officer, request_iterator)

    @allow(*CONTENT)
    def MatchQuery(
        self, officer: Officer, request: mpb.MatchQueryRequest, context: grpc.ServicerContext
    ) -> Iterator[mpb.MatchAnswer]:
        yield from self.matching.query(officer, request)

    # A new OPRF key generation for this agency's published index: a supervisor's or an
    # administrator's decision. The rotation runs on in the node if the caller leaves.
    @allow(Role.SUPERVISOR, Role.ADMIN)
    def RotateMatchKey(
        self,
        officer: Officer,
        request: mpb.RotateMatchKeyRequest,
        context: grpc.ServicerContext,
    ) -> Iterator[mpb.RotateMatchKeyProgress]:
        rotation = self.matching.rotate(officer, request.overlap_hours)
        while not rotation.finished.wait(1.0):
            if not context.is_active():
                return
            yield rotation.progress()
        if rotation.error is not None:
            if isinstance(rotation.error, MlaxError):
                raise rotation.error
            raise ConflictError("The key rotation failed; the old key stays current.")
        yield rotation.progress()

    # Disclosing a victim's identity is the holder supervisor's decision (four-eyes).
    @allow(Role.SUPERVISOR)
    def Disclose(
        self, officer: Officer, request: mpb.DiscloseRequest, context: grpc.ServicerContext
    ) -> opb.DiscloseResponse:
        done = match_disclosure.disclose(
            self.core,
            self.cases,
            officer,
            request.case_ref,
            check_only=request.check_only,
            override=request.override_mismatch,
            reason=request.override_reason,
        )
        return opb.DiscloseResponse(
            agreement=done.agreement.value,
            disclosed=done.disclosed,
            overridden=done.overridden,
            allowed=done.allowed,
            problem=done.problem,
            case=self._case_view(officer, request.case_ref),
        )


def _account(account: OfficerAccount) -> opb.OfficerAccount:
    return opb.OfficerAccount(
        name=account.name, role=account.role, active=account.active, created_at=account.created_at
    )
