"""Officer credentials at rest: bundles and the officer CA's key are Argon2id key files
(keys.keystore), the PBKDF2 PKCS#8 files of earlier releases still load, and the rules of
issuing (names, roles, duplicates, signing requests, own account) refuse bad input with
one sentence and change nothing."""

from __future__ import annotations

import datetime
import ipaddress
import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from exchange.errors import KeystoreError, MlaxError, PassphraseError
from keys.keystore import KDF_PROFILE_ENV
from keys.officer_bundle import (
    LEGACY_BUNDLE_FORMAT,
    MAX_SERVER_CERTIFICATES,
    add_server_certificates,
    write_bundle,
)
from node.client import Credential
from node.client.admin import signing_request
from node.services.officers import (
    OfficerCA,
    OfficerIssuer,
    add_officer,
    issue_from_csr,
    list_accounts,
    list_officers,
    set_officer,
)
from node.storage.db import Database

AGENCY = "GB-NCA"
NODE_PASS, OFFICER_PASS = b"node pass", b"officer pass"


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KDF_PROFILE_ENV, "test")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'node.db'}")
    database.migrate()
    yield database
    database.close()


@pytest.fixture
def ca(tmp_path: Path) -> OfficerCA:
    return OfficerCA.load_or_create(tmp_path / "data", AGENCY, NODE_PASS)


@pytest.fixture
def issuer(ca: OfficerCA) -> OfficerIssuer:
    return OfficerIssuer(ca, AGENCY, "127.0.0.1:7444", ca.cert_pem)


def _issue(db: Database, ca: OfficerCA, name: str = "gb-ana", role: str = "officer") -> dict:
    return add_officer(
        db,
        ca,
        name=name,
        role=role,
        agency=AGENCY,
        endpoint="127.0.0.1:7444",
        server_cert_pem=ca.cert_pem,
        bundle_passphrase=OFFICER_PASS,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ledger(db: Database) -> list[dict]:
    from node.storage.models import LedgerEntryRow

    with db.read() as s:
        rows = s.query(LedgerEntryRow).order_by(LedgerEntryRow.idx).all()
        return [json.loads(r.entry) for r in rows if r.entry]


# -- bundles -------------------------------------------------------------------------------


def test_a_new_bundle_is_an_argon2id_key_file_that_loads(
    db: Database, ca: OfficerCA, tmp_path: Path
) -> None:
    bundle = _issue(db, ca)
    path = tmp_path / "ana.json"
    write_bundle(path, bundle)
    assert _mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "mlax-officer/v2"
    assert "private_key" not in doc
    assert doc["key_file"]["kdf"]["name"] == "argon2id"
    assert doc["key_file"]["purpose"] == "tls"
    assert doc["key_file"]["label"] == "gb-ana"
    assert "PRIVATE KEY" not in path.read_text()

    cred = Credential.load(path, OFFICER_PASS)
    assert (cred.officer, cred.role, cred.agency) == ("gb-ana", "officer", AGENCY)
    key = serialization.load_pem_private_key(cred.private_key_pem, None)
    cert = x509.load_pem_x509_certificate(cred.certificate)
    assert cert.public_key() == key.public_key()
    with pytest.raises(PassphraseError, match="does not decrypt"):
        Credential.load(path, b"wrong")
    # Never replaced by a second write of the same name.
    with pytest.raises(KeystoreError):
        write_bundle(path, bundle)


def _legacy_bundle(ca: OfficerCA, passphrase: bytes) -> dict[str, str]:
    """A bundle as releases before Argon2id wrote it: PKCS#8 PEM under PBKDF2."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue("gb-old", key.public_key(), 30)
    return {
        "format": LEGACY_BUNDLE_FORMAT,
        "officer": "gb-old",
        "role": "supervisor",
        "agency": AGENCY,
        "endpoint": "127.0.0.1:7444",
        "server_certificate": ca.cert_pem.decode(),
        "certificate": cert.decode(),
        "private_key": key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        ).decode(),
    }


def test_a_legacy_pbkdf2_bundle_still_loads(ca: OfficerCA, tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_legacy_bundle(ca, OFFICER_PASS)))
    cred = Credential.load(path, OFFICER_PASS)
    assert (cred.officer, cred.role) == ("gb-old", "supervisor")
    key = serialization.load_pem_private_key(cred.private_key_pem, None)
    assert x509.load_pem_x509_certificate(cred.certificate).public_key() == key.public_key()
    with pytest.raises(PassphraseError, match="does not decrypt"):
        Credential.load(path, b"wrong")


def test_a_bundle_whose_key_is_not_its_certificates_is_refused(
    db: Database, ca: OfficerCA, tmp_path: Path
) -> None:
    bundle = _issue(db, ca)
    bundle["certificate"] = _issue(db, ca, "gb-ben")["certificate"]
    path = tmp_path / "swapped.json"
    path.write_text(json.dumps(bundle))
    with pytest.raises(KeystoreError, match="does not match its certificate"):
        Credential.load(path, OFFICER_PASS)
    path.write_text('{"format": "mlax-officer/v2", "officer": 1}')
    with pytest.raises(KeystoreError, match="not an MLAX officer credential"):
        Credential.load(path, OFFICER_PASS)


# -- trusted server certificates (a TLS renewal) -------------------------------------------


def _server_cert(host: str = "127.0.0.1") -> bytes:
    """A self-signed certificate for `host`, as a node's TLS certificate is."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, AGENCY)])
    now = datetime.datetime.now(datetime.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _bundle_at(tmp_path: Path, db: Database, ca: OfficerCA, server: bytes) -> Path:
    bundle = _issue(db, ca)
    bundle["server_certificate"] = server.decode()
    path = tmp_path / "ana.json"
    write_bundle(path, bundle)
    return path


def test_a_learned_server_certificate_is_trusted_and_nothing_else_changes(
    db: Database, ca: OfficerCA, tmp_path: Path
) -> None:
    current, nxt = _server_cert(), _server_cert()
    path = _bundle_at(tmp_path, db, ca, current)
    before = json.loads(path.read_text())
    assert Credential.load(path, OFFICER_PASS).server_certificates == (current,)

    assert add_server_certificates(path, [current, nxt, nxt]) is True
    after = json.loads(path.read_text())
    assert after.pop("server_certificates") == [nxt.decode()]
    assert after == before  # the sealed key and every other field as they were
    assert _mode(path) == 0o600
    cred = Credential.load(path, OFFICER_PASS)
    assert cred.server_certificates == (current, nxt)
    assert cred.server_certificate == current  # what older SDKs read, and the server name

    # Known already: the file is not rewritten.
    written = path.read_bytes()
    assert add_server_certificates(path, [nxt, current]) is False
    assert path.read_bytes() == written
    # Bounded: the oldest learned certificate goes first.
    more = [_server_cert() for _ in range(MAX_SERVER_CERTIFICATES)]
    assert add_server_certificates(path, [*more, b"not a certificate"]) is True
    assert Credential.load(path, OFFICER_PASS).server_certificates == (current, *more)


def test_a_legacy_bundle_learns_a_server_certificate_and_keeps_its_format(
    ca: OfficerCA, tmp_path: Path
) -> None:
    path = tmp_path / "old.json"
    path.write_text(json.dumps(_legacy_bundle(ca, OFFICER_PASS)))
    nxt = _server_cert()
    assert add_server_certificates(path, [nxt]) is True
    assert json.loads(path.read_text())["format"] == LEGACY_BUNDLE_FORMAT
    assert Credential.load(path, OFFICER_PASS).server_certificates == (ca.cert_pem, nxt)


@pytest.mark.parametrize(
    "field",
    ["a certificate", [1], ["not a pem"], ["-----BEGIN CERTIFICATE-----"] * 5, {"a": 1}],
)
def test_a_bundle_with_a_malformed_server_certificates_field_is_refused(
    db: Database, ca: OfficerCA, tmp_path: Path, field: object
) -> None:
    path = _bundle_at(tmp_path, db, ca, _server_cert())
    doc = json.loads(path.read_text())
    doc["server_certificates"] = field
    path.write_text(json.dumps(doc))
    written = path.read_bytes()
    with pytest.raises(KeystoreError, match="not an MLAX officer credential"):
        Credential.load(path, OFFICER_PASS)
    with pytest.raises(KeystoreError, match="not an MLAX officer credential"):
        add_server_certificates(path, [_server_cert()])
    assert path.read_bytes() == written


def test_a_credential_trusts_only_certificates_for_the_same_server(
    db: Database, ca: OfficerCA, tmp_path: Path
) -> None:
    current = _server_cert("gb.example")
    cred = Credential.load(_bundle_at(tmp_path, db, ca, current), OFFICER_PASS)
    same, other = _server_cert("gb.example"), _server_cert("attacker.example")
    wider = cred.trusting([other, b"-----BEGIN CERTIFICATE-----\nxx\n", same, current])
    assert wider.server_certificates == (current, same)
    assert cred.trusting([other]) == cred


def test_whoami_names_the_current_then_the_next_server_certificate(ca: OfficerCA) -> None:
    current, nxt = _server_cert(), _server_cert()
    assert OfficerIssuer(ca, AGENCY, "e:1", current).server_certificates() == [current.decode()]
    renewing = OfficerIssuer(ca, AGENCY, "e:1", current, nxt)
    assert renewing.server_certificates() == [current.decode(), nxt.decode()]


# -- the officer CA's key ------------------------------------------------------------------


def test_the_officer_ca_key_is_an_argon2id_key_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ca = OfficerCA.load_or_create(data, AGENCY, NODE_PASS)
    key_file = data / "officer-ca.key"
    assert _mode(key_file) == 0o600
    doc = json.loads(key_file.read_text())
    assert (doc["kdf"]["name"], doc["purpose"], doc["label"]) == ("argon2id", "officer-ca", AGENCY)
    again = OfficerCA.load_or_create(data, AGENCY, NODE_PASS)
    assert again.cert_pem == ca.cert_pem
    assert again.key.private_numbers() == ca.key.private_numbers()
    with pytest.raises(PassphraseError):
        OfficerCA.load_or_create(data, AGENCY, b"wrong")


def test_a_legacy_pbkdf2_ca_key_loads_and_is_rewritten_as_argon2id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ca = OfficerCA.load_or_create(data, AGENCY, NODE_PASS)
    key_file = data / "officer-ca.key"
    key_file.unlink()
    key_file.write_bytes(
        ca.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(NODE_PASS),
        )
    )
    with pytest.raises(PassphraseError):
        OfficerCA.load_or_create(data, AGENCY, b"wrong")
    assert key_file.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY")

    loaded = OfficerCA.load_or_create(data, AGENCY, NODE_PASS)
    assert loaded.key.private_numbers() == ca.key.private_numbers()
    assert json.loads(key_file.read_text())["kdf"]["name"] == "argon2id"
    assert _mode(key_file) == 0o600
    reloaded = OfficerCA.load_or_create(data, AGENCY, NODE_PASS)
    assert reloaded.key.private_numbers() == ca.key.private_numbers()


def test_a_ca_key_left_without_its_certificate_gets_it_again(tmp_path: Path) -> None:
    """The node stopped between writing the CA key and its certificate: the next start
    makes the certificate again for the same key, and credentials it issued still chain."""
    ca = OfficerCA.load_or_create(tmp_path, AGENCY, NODE_PASS)
    issued = x509.load_pem_x509_certificate(
        ca.issue("alice", ec.generate_private_key(ec.SECP256R1()).public_key(), 30)
    )
    (tmp_path / "officer-ca.crt").unlink()
    again = OfficerCA.load_or_create(tmp_path, AGENCY, NODE_PASS)
    assert again.key.private_numbers() == ca.key.private_numbers()
    old = x509.load_pem_x509_certificate(ca.cert_pem)
    new = x509.load_pem_x509_certificate(again.cert_pem)
    assert (new.subject, new.public_key()) == (old.subject, old.public_key())
    assert (tmp_path / "officer-ca.crt").read_bytes() == again.cert_pem
    issued.verify_directly_issued_by(new)  # a credential issued before still chains


def test_a_ca_key_that_is_not_the_certificates_is_refused(tmp_path: Path) -> None:
    a = OfficerCA.load_or_create(tmp_path / "a", AGENCY, NODE_PASS)
    OfficerCA.load_or_create(tmp_path / "b", AGENCY, NODE_PASS)
    (tmp_path / "b" / "officer-ca.crt").write_bytes(a.cert_pem)
    with pytest.raises(KeystoreError, match="is not the key of"):
        OfficerCA.load_or_create(tmp_path / "b", AGENCY, NODE_PASS)


# -- the rules of issuing and changing (shared by the host CLI and the admin API) ----------


def _foreign_csr() -> bytes:
    """A CSR for an Ed25519 key: well formed, but not the P-256 key a credential needs."""
    key = ed25519.Ed25519PrivateKey.generate()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, None)
    )
    return csr.public_bytes(serialization.Encoding.DER)


def _forged_csr() -> bytes:
    """A CSR naming one P-256 key but signed by another (no proof of possession)."""
    named = ec.generate_private_key(ec.SECP256R1())
    signer = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(signer, hashes.SHA256())
    der = csr.public_bytes(serialization.Encoding.DER)
    signer_spki = signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    named_spki = named.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert der.count(signer_spki) == 1
    return der.replace(signer_spki, named_spki)


@pytest.mark.parametrize(
    ("changes", "status", "words"),
    [
        ({"name": "gb-ana"}, "ALREADY_EXISTS", "already exists"),
        ({"role": "chief"}, "INVALID_ARGUMENT", "is not one of"),
        ({"name": ""}, "INVALID_ARGUMENT", "1 to 64 bytes"),
        ({"name": "a\nb"}, "INVALID_ARGUMENT", "1 to 64 bytes"),
        ({"name": "é" * 33}, "INVALID_ARGUMENT", "1 to 64 bytes"),
        ({"csr_der": b"not a csr"}, "INVALID_ARGUMENT", "not a PKCS#10"),
        ({"csr_der": b"x" * 5000}, "INVALID_ARGUMENT", "1 to 4096 bytes"),
        ({"csr_der": "foreign"}, "INVALID_ARGUMENT", "P-256"),
        ({"csr_der": "forged"}, "INVALID_ARGUMENT", "does not verify"),
        ({"days": 4000}, "INVALID_ARGUMENT", "1 to 3650 days"),
        ({"csr_der": "taken"}, "ALREADY_EXISTS", "already belongs"),
    ],
)
def test_issuing_refuses_bad_input_and_changes_nothing(
    db: Database,
    issuer: OfficerIssuer,
    changes: dict,
    status: str,
    words: str,
) -> None:
    _, taken = signing_request()
    issue_from_csr(db, issuer, name="gb-ana", role="officer", csr_der=taken, days=0, by="gb-admin")
    before = (list_officers(db), len(_ledger(db)))
    request = {"name": "gb-new", "role": "officer", "csr_der": signing_request()[1], "days": 0}
    request.update(changes)
    request["csr_der"] = {"foreign": _foreign_csr(), "forged": _forged_csr(), "taken": taken}.get(
        request["csr_der"], request["csr_der"]
    )
    with pytest.raises(MlaxError) as refused:
        issue_from_csr(db, issuer, by="gb-admin", **request)
    assert refused.value.status == status
    assert words in refused.value.message
    after = (list_officers(db), len(_ledger(db)))
    assert [(r.name, r.role, r.active) for r in after[0]] == [
        (r.name, r.role, r.active) for r in before[0]
    ]
    assert after[1] == before[1]


def test_changes_are_ledgered_with_the_admin_and_refused_on_ones_own_account(
    db: Database, ca: OfficerCA, issuer: OfficerIssuer
) -> None:
    _issue(db, ca, "gb-ana")
    _, csr = signing_request()
    issue_from_csr(db, issuer, name="gb-ben", role="auditor", csr_der=csr, days=7, by="gb-admin")
    set_officer(db, "gb-ana", role="supervisor", by="gb-admin")
    set_officer(db, "gb-ana", active=False)
    assert [a.name for a in list_accounts(db, by="gb-admin")] == ["gb-ana", "gb-ben"]
    officer_entries = [e for e in _ledger(db) if e["kind"].startswith("officer.")]
    assert [{k: v for k, v in e.items() if k != "at"} for e in officer_entries] == [
        {"kind": "officer.added", "officer": "gb-ana", "role": "officer"},
        {"kind": "officer.added", "officer": "gb-ben", "role": "auditor", "by": "gb-admin"},
        {
            "kind": "officer.changed",
            "officer": "gb-ana",
            "role": "supervisor",
            "active": True,
            "by": "gb-admin",
        },
        {"kind": "officer.changed", "officer": "gb-ana", "role": "supervisor", "active": False},
        {"kind": "officer.listed", "by": "gb-admin", "count": 2},
    ]
    size = len(_ledger(db))
    for name, changes, status in [
        ("gb-ben", {"by": "gb-ben", "active": False}, "FAILED_PRECONDITION"),
        ("nobody", {"by": "gb-admin", "role": "officer"}, "NOT_FOUND"),
        ("gb-ben", {"by": "gb-admin", "role": "boss"}, "INVALID_ARGUMENT"),
    ]:
        with pytest.raises(MlaxError) as refused:
            set_officer(db, name, **changes)
        assert refused.value.status == status
    assert len(_ledger(db)) == size
    assert [(r.name, r.role, r.active) for r in list_officers(db)] == [
        ("gb-ana", "supervisor", False),
        ("gb-ben", "auditor", True),
    ]
