"""node.rpc.auth: one role table per officer-listener service (mlax.v1.Officer and
mlax.v1.Statistics), declared next to each method, enforced before every method body,
closed for any method that declares nothing, and equal to the table docs/protocol.md 11.7
publishes for that service."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar

import grpc
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from prometheus_client import REGISTRY

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange._proto.mlax.v1 import officer_pb2_grpc as ogrpc
from exchange.policy import Role
from node.rpc.auth import (
    Authorizing,
    OfficerAuth,
    allow,
    declared_roles,
    enforce_roles,
    peer_agency,
)
from node.rpc.errors import ErrorInterceptor, UnauthenticatedError
from node.rpc.officer import DESCRIPTOR, OfficerService
from node.rpc.stats import DESCRIPTOR as STATS_DESCRIPTOR
from node.rpc.stats import StatsService
from node.services.messages import Officer, PermissionDeniedError
from node.services.officers import ROLES, ActiveOfficer, spki_sha256

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
CERT = b"-----BEGIN CERTIFICATE-----\nnot parsed here\n-----END CERTIFICATE-----\n"
A = TypeVar("A", bound=Authorizing)


class Service(NamedTuple):
    """A servicer on the officer listener and where docs/protocol.md publishes its roles."""

    servicer: type[Authorizing]
    descriptor: ServiceDescriptor
    section: str  # the heading of the docs/protocol.md section holding its role table
    table: str  # the first header cell of that table

    def __repr__(self) -> str:
        return self.descriptor.full_name


OFFICER = Service(OfficerService, DESCRIPTOR, "### 11.7 The officer service", "call")
STATISTICS = Service(
    StatsService, STATS_DESCRIPTOR, "### 11.7 The officer service", "statistics call"
)
SERVICES = [OFFICER, STATISTICS]


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

    def __call__(self, cert: bytes) -> ActiveOfficer | None:
        self.lookups += 1
        return None if self.role is None else ActiveOfficer(name="ana", role=self.role)


def _rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("mlax_messages_rejected_total", {"reason": reason}) or 0.0


def _servicer(role: str | None, cls: type[A]) -> A:
    """A servicer of `cls` with no services behind it: only its authorization can answer."""
    servicer = object.__new__(cls)
    servicer.auth = OfficerAuth(declared_roles(cls), Accounts(role))
    return servicer


def _request(method: Any) -> Any:
    """A request for `method` as gRPC hands it over (an iterator for a client stream)."""
    request = GetMessageClass(method.input_type)()
    return iter([request]) if method.client_streaming else request


# -- the table ----------------------------------------------------------------------------


def test_roles_are_the_roles_an_officer_account_can_have() -> None:
    assert [r.value for r in Role] == list(ROLES)


@pytest.mark.parametrize("service", SERVICES, ids=repr)
def test_every_method_declares_its_roles(service: Service) -> None:
    table = declared_roles(service.servicer)
    methods = [m.name for m in service.descriptor.methods]
    assert methods, service
    assert sorted(table) == sorted(methods)
    undeclared = [name for name in methods if not table[name]]
    assert undeclared == [], f"{service} methods with no @allow: {undeclared}"


def _documented_table(service: Service) -> dict[str, frozenset[Role]]:
    """The service's role table in docs/protocol.md: the one table in `service.section`
    whose header starts `| <service.table> |`; call names in backticks, `yes...` cells."""
    text = DOC.read_text(encoding="utf-8")
    assert text.count(f"\n{service.section}\n") == 1, f"one section {service.section!r}"
    section = text.split(f"\n{service.section}\n", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith(f"| {service.table} |")]
    assert len(lines) == 1, f"one {service.table!r} table in {service.section!r}"
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


@pytest.mark.parametrize("service", SERVICES, ids=repr)
def test_the_documented_role_table_is_the_declared_one(service: Service) -> None:
    assert _documented_table(service) == dict(declared_roles(service.servicer))


# -- enforcement --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "method"),
    [(s, m) for s in SERVICES for m in s.descriptor.methods],
    ids=lambda x: repr(x) if isinstance(x, Service) else x.name,
)
def test_every_method_is_authorized_before_its_body(service: Service, method: Any) -> None:
    # A role no call allows: each method refuses before touching a service (it has none).
    servicer = _servicer("nobody", service.servicer)
    with pytest.raises(PermissionDeniedError, match=f"The nobody role may not call {method.name}"):
        getattr(servicer, method.name)(_request(method), Context())
    with pytest.raises(UnauthenticatedError):
        getattr(_servicer(None, service.servicer), method.name)(_request(method), Context())


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
        auth: OfficerAuth

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
    ogrpc.add_OfficerServicer_to_server(_servicer("officer", OfficerService), server)
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
