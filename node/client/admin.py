"""The officer SDK for admins: this node's officer accounts, without a shell on its host.

admin = AdminClient(OfficerClient.from_bundle(Path("admin.json"), b"passphrase"))
for account in admin.officers(): ...
account, bundle = admin.issue("gb-ana", role="officer", passphrase=b"for ana")
write_bundle(Path("gb-ana.json"), bundle)  # keys.officer_bundle: 0600, never replaces
admin.set_role("gb-ana", "supervisor")
admin.set_active("gb-ana", False)

Issuing keeps the new officer's private key on this side: the SDK makes a P-256 key and
a certificate signing request signed by it, the node (over the admin's mutual-TLS
channel) answers with the certificate, and the SDK seals the key under the passphrase
the admin chose into the bundle (Argon2id). Neither the key nor that passphrase ever
travels to the node, so neither can reach its logs or ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.errors import InvalidFieldError, KeystoreError
from keys.keystore import KdfParams
from keys.officer_bundle import BundleInfo, key_matches_certificate, seal_bundle
from node.client.officer import OfficerClient


@dataclass(frozen=True)
class OfficerAccount:
    """One officer account of the node: name, role, whether it may call, when issued."""

    name: str
    role: str
    active: bool
    created_at: int

    @classmethod
    def from_proto(cls, a: opb.OfficerAccount) -> OfficerAccount:
        return cls(a.name, a.role, a.active, a.created_at)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def signing_request() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and a DER certificate signing request signed by it (the node
    ignores its subject: the certificate names the account)."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlax officer")]))
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(serialization.Encoding.DER)


class AdminClient:
    """Officer administration through an admin's OfficerClient (its channel and errors)."""

    def __init__(self, client: OfficerClient) -> None:
        self.client = client

    def _call(self, name: str, request: Any) -> Any:
        return self.client._call(getattr(self.client._stub, name), request)

    def officers(self) -> list[OfficerAccount]:
        """Every officer account of the node (ledgered as officer.listed)."""
        resp: opb.ListOfficersResponse = self._call("ListOfficers", opb.ListOfficersRequest())
        return [OfficerAccount.from_proto(a) for a in resp.officers]

    def issue(
        self,
        name: str,
        *,
        role: str,
        passphrase: bytes,
        days: int = 0,
        kdf: KdfParams | None = None,
    ) -> tuple[OfficerAccount, dict[str, Any]]:
        """Issue a credential: the new account and its bundle, sealed under `passphrase`."""
        if not passphrase:
            raise InvalidFieldError("The new credential's passphrase must not be empty.")
        if days < 0:
            raise InvalidFieldError("A credential is valid for 1 to 3650 days.")
        key, csr = signing_request()
        resp: opb.IssueOfficerResponse = self._call(
            "IssueOfficer", opb.IssueOfficerRequest(name=name, role=role, csr=csr, days=days)
        )
        certificate = bytes(resp.certificate)
        if not key_matches_certificate(key, certificate):
            raise KeystoreError("The node's certificate is not for the key this request made.")
        account = OfficerAccount.from_proto(resp.officer)
        info = BundleInfo(
            account.name,
            account.role,
            resp.agency,
            resp.endpoint,
            bytes(resp.server_certificate),
            certificate,
        )
        return account, seal_bundle(info, key, passphrase, kdf)

    def set_role(self, name: str, role: str) -> OfficerAccount:
        """Change an account's role; it applies to that officer's next call."""
        req = opb.SetOfficerRoleRequest(name=name, role=role)
        return OfficerAccount.from_proto(self._call("SetOfficerRole", req))

    def set_active(self, name: str, active: bool) -> OfficerAccount:
        """Deactivate (or reactivate) an account; a deactivated officer's next call is refused."""
        req = opb.SetOfficerActiveRequest(name=name, active=active)
        return OfficerAccount.from_proto(self._call("SetOfficerActive", req))
