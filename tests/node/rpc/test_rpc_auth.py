"""node.rpc.auth: one role table for the officer service, declared next to each method,
enforced before every method body, closed for any method that declares nothing, and equal
to the table docs/protocol.md 11.7 publishes."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.message_factory import GetMessageClass
from prometheus_client import REGISTRY

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.policy import Role
from node.rpc.auth import OfficerAuth, allow, declared_roles, enforce_roles, peer_agency
from node.rpc.errors import ErrorInterceptor, UnauthenticatedError
from node.rpc.officer import DESCRIPTOR, OfficerService
from node.services.messages import Officer, PermissionDeniedError
from node.services.officers import ROLES, spki_sha256
from node.storage.models import OfficerRow

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
CERT = b"-----BEGIN CERTIFICATE-----\nnot parsed here\n-----END CERTIFICATE-----\n"


class Context:
    """The part of a grpc.ServicerContext that authorization reads."""

    def __init__(self, cert: bytes | None = CERT) -> None:
        self._auth = {"x509_pem_cert": [cert]} if cert else {}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


class Accounts:
    """The officers table as `OfficerAuth` sees it: read again on every call."""

    def __init__(self, role: str | None) -> None:
        self.role = role
        self.lookups = 0

    def __call__(self, cert: bytes) -> OfficerRow | None:
        self.lookups += 1
        return None if self.role is None else OfficerRow(name="ana", role=self.role)


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("mlax_messages_rejected_total", {"reason": reason}) or 0.0


def _servicer(role: str | None) -> OfficerService:
    """An OfficerService with no services behind it: only its authorization can answer."""
    servicer = object.__new__(OfficerService)
    servicer.auth = OfficerAuth(declared_roles(OfficerService), Accounts(role))
    return servicer


def _request(method: Any) -> Any:
    """A request for `method` as gRPC hands it over (an iterator for a client stream)."""
    request = GetMessageClass(method.input_type)()
    return iter([request]) if method.client_streaming else request


# -- the table ----------------------------------------------------------------------------


def test_roles_are_the_roles_an_officer_account_can_have() -> None:
    assert [r.value for r in Role] == list(ROLES)


def test_every_officer_method_declares_its_roles() -> None:
    table = declared_roles(OfficerService)
    methods = [m.name for m in DESCRIPTOR.methods]
    assert sorted(table) == sorted(methods)
    undeclared = [name for name in methods if not table[name]]
    assert undeclared == [], f"OfficerService methods with no @allow: {undeclared}"


def _documented_table() -> dict[str, frozenset[Role]]:
    """The role table of docs/protocol.md 11.7: call names in backticks, `yes...` cells."""
    section = DOC.read_text(encoding="utf-8").split("### 11.7 The officer service", 1)[1]
    section = section.split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| call |")]
    assert len(lines) == 1, "one role table in 11.7"
    start = section.splitlines().index(lines[0])
    rows = []
    for line in section.splitlines()[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, _, *body = rows
    roles = [Role(name) for name in header[1:]]
    table: dict[str, frozenset[Role]] = {}
    for cells in body:
        allowed = frozenset(r for r, cell in zip(roles, cells[1:], strict=True) if cell)
        assert all(cell.startswith("yes") for cell in cells[1:] if cell), cells
        for call in re.findall(r"`(\w+)`", cells[0]):
            assert call not in table, f"{call} is in the table twice"
            table[call] = allowed
    return table


def test_the_documented_role_table_is_the_declared_one() -> None:
    assert _documented_table() == dict(declared_roles(OfficerService))


# -- enforcement --------------------------------------------------------------------------


@pytest.mark.parametrize("method", list(DESCRIPTOR.methods), ids=lambda m: m.name)
def test_every_method_is_authorized_before_its_body(method: Any) -> None:
    # A role no call allows: each method refuses before touching a service (it has none).
    servicer = _servicer("nobody")
    with pytest.raises(PermissionDeniedError, match=f"The nobody role may not call {method.name}"):
        getattr(servicer, method.name)(_request(method), Context())
    with pytest.raises(UnauthenticatedError):
        getattr(_servicer(None), method.name)(_request(method), Context())


def test_refusals_are_the_documented_status_sentence_metric_and_log() -> None:
    auth = OfficerAuth(declared_roles(OfficerService), Accounts("auditor"))
    before = _rejected("role")
    with structlog.testing.capture_logs() as logs, pytest.raises(PermissionDeniedError) as exc:
        auth.authorize(Context(), "Submit")  # type: ignore[arg-type]
    assert exc.value.status == "PERMISSION_DENIED"
    assert exc.value.message == "The auditor role may not call Submit."
    assert _rejected("role") == before + 1
    assert [e for e in logs if e["event"] == "officer_refused"] == [
        {
            "event": "officer_refused",
            "officer": "ana",
            "role": "auditor",
            "call": "Submit",
            "log_level": "warning",
        }
    ]

    before = _rejected("unknown_officer")
    for context, accounts in ((Context(), Accounts(None)), (Context(cert=None), Accounts("admin"))):
        with pytest.raises(UnauthenticatedError) as unknown:
            OfficerAuth(declared_roles(OfficerService), accounts).authorize(context, "WhoAmI")  # type: ignore[arg-type]
        assert unknown.value.status == "UNAUTHENTICATED"
        assert unknown.value.message == "This credential is not an active officer here."
    assert _rejected("unknown_officer") == before + 2


def test_the_role_is_read_at_every_call() -> None:
    accounts = Accounts("officer")
    auth = OfficerAuth(declared_roles(OfficerService), accounts)
    assert auth.authorize(Context(), "Submit") == Officer("ana", "officer")  # type: ignore[arg-type]
    accounts.role = "auditor"  # demoted
    with pytest.raises(PermissionDeniedError):
        auth.authorize(Context(), "Submit")  # type: ignore[arg-type]
    accounts.role = None  # deactivated
    with pytest.raises(UnauthenticatedError):
        auth.authorize(Context(), "WhoAmI")  # type: ignore[arg-type]
    assert accounts.lookups == 3


# -- failing closed -----------------------------------------------------------------------


@enforce_roles(DESCRIPTOR)
class _HalfDeclared:
    """Declares WhoAmI, implements Submit without a declaration, and nothing else."""

    def __init__(self, role: str) -> None:
        self.auth = OfficerAuth(declared_roles(_HalfDeclared), Accounts(role))
        self.ran: list[str] = []

    @allow(Role.OFFICER)
    def WhoAmI(self, officer: Officer, request: Any, context: Any) -> str:
        self.ran.append("WhoAmI")
        return officer.name

    def Submit(self, request: Any, context: Any) -> str:
        self.ran.append("Submit")
        return "sent"


@pytest.mark.parametrize("role", list(Role))
def test_an_undeclared_method_is_refused_for_every_role(role: Role) -> None:
    servicer = _HalfDeclared(role)
    assert declared_roles(_HalfDeclared)["Submit"] == frozenset()
    for name in ("Submit", "ListMessages"):  # implemented without @allow; not implemented
        with pytest.raises(PermissionDeniedError, match=f"may not call {name}"):
            getattr(servicer, name)(opb.SubmitRequest(), Context())
    assert servicer.ran == []
    if role is Role.OFFICER:
        assert servicer.WhoAmI(opb.WhoAmIRequest(), Context()) == "ana"
        assert servicer.ran == ["WhoAmI"]


def test_a_declaration_for_a_method_the_service_lacks_is_an_error() -> None:
    class Typo:
        @allow(Role.OFFICER)
        def Sumbit(self, officer: Officer, request: Any, context: Any) -> None:
            pass

    with pytest.raises(TypeError, match=r"Sumbit not in mlax\.v1\.Officer"):
        enforce_roles(DESCRIPTOR)(Typo)
    with pytest.raises(TypeError, match="needs a role"):
        allow()
    with pytest.raises(TypeError, match="not decorated"):
        declared_roles(Typo)


# -- peers on the federation listener -----------------------------------------------------


def _certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


class Directory:
    def __init__(self, pins: dict[bytes, str]) -> None:
        self.pins = pins

    def agency_by_tls_pin(self, pin: bytes) -> Any:
        agency = self.pins.get(pin)
        return None if agency is None else SimpleNamespace(agency_id=agency)


def test_a_peer_is_the_agency_its_pinned_tls_key_names() -> None:
    cert, other = _certificate(), _certificate()
    directory = Directory({spki_sha256(cert): "FR-OCRTEH"})
    assert peer_agency(directory, Context(cert)) == "FR-OCRTEH"  # type: ignore[arg-type]
    before = _rejected("unknown_peer")
    for context in (Context(other), Context(cert=None)):
        with pytest.raises(UnauthenticatedError, match="not pinned for any agency"):
            peer_agency(directory, context)  # type: ignore[arg-type]
    assert _rejected("unknown_peer") == before + 2


# -- as gRPC serves it --------------------------------------------------------------------


@pytest.fixture
def officer_listener() -> Iterator[grpc.Channel]:
    """The real OfficerService registration, behind the node's error interceptor."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=[ErrorInterceptor()]
    )
    ogrpc.add_OfficerServicer_to_server(_servicer("officer"), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        server.stop(None)


def test_a_call_without_a_client_certificate_is_unauthenticated(
    officer_listener: grpc.Channel,
) -> None:
    stub = ogrpc.OfficerStub(officer_listener)
    with pytest.raises(grpc.RpcError) as exc:
        stub.WhoAmI(opb.WhoAmIRequest(), timeout=10)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert exc.value.details() == "This credential is not an active officer here."
    with pytest.raises(grpc.RpcError) as exc:
        next(iter(stub.ExportLedger(opb.ExportLedgerRequest(), timeout=10)))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
