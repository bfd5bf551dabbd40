"""Agency identities: what `create_identity` writes, and what `load_identity` gives a node."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from exchange.agency import AgencyCard, KeyAlgorithm
from exchange.directory import AdminKey, Directory
from exchange.encoding import now_ms
from exchange.envelope import MemorySeenIds, MessageType, open_envelope, seal
from exchange.errors import InvalidFieldError, KeystoreError, PassphraseError
from keys.card_file import card_from_json, card_to_json, read_card_file
from keys.identity import AgencyIdentity, load_identity, read_card
from keys.identity_file import IDENTITY_FILE
from keys.tls import spki_sha256

DAY = 24 * 3600 * 1000
# The `make_identity` fixture of conftest.py: (agency_id, endpoint=..., **create_identity args).
MakeIdentity = Callable[..., tuple[Path, AgencyCard]]


def _directory(*cards: AgencyCard) -> Directory:
    t = now_ms()
    return Directory(
        federation_id="test",
        version=1,
        issued_at=t,
        expires_at=t + DAY,
        threshold=1,
        admins=(AdminKey("admin", bytes(32)),),
        agencies=cards,
    )


def test_layout_and_permissions(make_identity: MakeIdentity) -> None:
    directory, _ = make_identity()

    names = sorted(p.name for p in directory.iterdir())
    key_files = [n for n in names if n.endswith(".key")]
    assert {"card.json", "identity.json", "tls.crt"} <= set(names)
    assert sorted(n.split("-")[0] for n in key_files) == [
        "encryption",
        "encryption",
        "signing",
        "tls",
    ]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for name in key_files:
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    for name in ("card.json", "identity.json", "tls.crt"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o644
    assert not any(n.startswith(".") for n in names)


def test_card_lists_each_key_with_its_algorithm(make_identity: MakeIdentity) -> None:
    _, card = make_identity(validity_days=90)

    assert [k.algorithm for k in card.signing_keys] == [KeyAlgorithm.ED25519]
    assert sorted(k.algorithm.label for k in card.encryption_keys) == [
        "mlkem768-x25519",
        "x25519",
    ]
    hybrid = next(k for k in card.encryption_keys if k.algorithm is KeyAlgorithm.MLKEM768_X25519)
    assert len(hybrid.public_key) == 1184 + 32
    for key in (*card.signing_keys, *card.encryption_keys):
        assert key.not_after - key.not_before == 90 * DAY
    assert card.country == "GB"
    assert card.revoked_keys == ()


def test_card_json_is_the_protobuf_json_of_the_card(make_identity: MakeIdentity) -> None:
    directory, card = make_identity()

    exported = read_card_file(directory / "card.json")

    assert exported == card == read_card(directory)
    assert json.loads((directory / "card.json").read_text())["agencyId"] == "GB-NCA"
    assert card_from_json(card_to_json(card)) == card


def test_tls_pin_is_sha256_of_the_certificate_spki(make_identity: MakeIdentity) -> None:
    directory, card = make_identity()
    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())

    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert (
        card.tls_spki_sha256
        == hashlib.sha256(spki).digest()
        == spki_sha256(card.tls_certificate_pem)
    )
    assert card.tls_certificate_pem == (directory / "tls.crt").read_bytes()


def _san(card: AgencyCard) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(card.tls_certificate_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.DNSName), [
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)
    ]


@pytest.mark.parametrize(
    ("endpoint", "dns", "ips"),
    [
        ("node.gb.example:7443", ["node.gb.example"], []),
        ("192.0.2.10:7443", [], ["192.0.2.10"]),
        ("[2001:db8::1]:7443", [], ["2001:db8::1"]),
        ("127.0.0.1:7401", ["localhost"], ["127.0.0.1", "::1"]),
        ("localhost:7401", ["localhost"], ["127.0.0.1", "::1"]),
    ],
)
def test_certificate_names_the_endpoint_host(
    make_identity: MakeIdentity, endpoint: str, dns: list[str], ips: list[str]
) -> None:
    _, card = make_identity(endpoint=endpoint)
    got_dns, got_ips = _san(card)
    assert sorted(got_dns) == sorted(dns)
    assert sorted(got_ips) == sorted(ips)


def test_country_may_be_given(make_identity: MakeIdentity) -> None:
    _, card = make_identity("EU-EUROPOL", country="NL")
    assert card.country == "NL"


def test_refuses_to_replace_an_existing_identity(make_identity: MakeIdentity) -> None:
    directory, _ = make_identity()
    before = {p.name: p.read_bytes() for p in directory.iterdir()}

    with pytest.raises(KeystoreError, match="already holds an agency identity"):
        make_identity()

    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before


@pytest.mark.parametrize(
    ("agency_id", "endpoint", "message"),
    [
        ("gb-nca", "node:7443", "is not of the form CC-NAME"),
        ("GB-NCA", "no-port", "is not HOST:PORT"),
        ("GB-NCA", "a b:7443", "neither an IP address nor a DNS name"),
        ("GB-NCA", "nöde.example:7443", "write international names in their xn-- form"),
    ],
)
def test_invalid_input_writes_nothing(
    make_identity: MakeIdentity, tmp_path: Path, agency_id: str, endpoint: str, message: str
) -> None:
    with pytest.raises(InvalidFieldError, match=message):
        make_identity(agency_id, endpoint=endpoint)
    assert list(tmp_path.iterdir()) == []


def test_invalid_country_writes_nothing(make_identity: MakeIdentity, tmp_path: Path) -> None:
    with pytest.raises(InvalidFieldError, match="is not an ISO 3166 alpha-2 code"):
        make_identity("GB-NCA", country="GBR")
    assert list(tmp_path.iterdir()) == []


def test_load_identity_gives_sender_recipient_and_tls(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, card = make_identity()

    identity = load_identity(directory, passphrase)

    assert identity.agency_id == "GB-NCA"
    assert identity.card == card
    assert identity.sender().key_id == card.signing_keys[0].key_id
    assert set(identity.signing_keys) == {card.signing_keys[0].key_id}
    recipient = identity.recipient()
    assert recipient.agency_id == "GB-NCA"
    assert set(recipient.decryption_keys) == {k.key_id for k in card.encryption_keys}
    tls_key = serialization.load_pem_private_key(identity.tls_private_key_pem(), password=None)
    cert = x509.load_pem_x509_certificate(identity.tls_certificate_pem())
    assert tls_key.public_key() == cert.public_key()
    assert "PRIVATE" not in repr(identity)


@pytest.mark.parametrize("suite", ["x25519", "mlkem768-x25519"])
def test_envelopes_seal_and_open_with_loaded_keys(
    make_identity: MakeIdentity, passphrase: bytes, suite: str
) -> None:
    fr_dir, fr_card = make_identity("FR-OCRTEH", endpoint="node.fr.example:7443")
    gb_dir, gb_card = make_identity("GB-NCA")
    fr, gb = load_identity(fr_dir, passphrase), load_identity(gb_dir, passphrase)
    # Seal to one key only, to prove each of the two decryption keys is loaded.
    to = replace(
        gb_card,
        encryption_keys=tuple(k for k in gb_card.encryption_keys if k.algorithm.label == suite),
    )
    t = now_ms()

    envelope = seal(fr.sender(t), to, b"request body", MessageType.NOTE, now_ms=t)
    opened = open_envelope(
        envelope.to_bytes(), _directory(fr_card, gb_card), gb.recipient(), MemorySeenIds(), now_ms=t
    )

    assert opened.body == b"request body"
    assert opened.header.recipient_key_id == to.encryption_keys[0].key_id


def test_wrong_passphrase_is_refused(make_identity: MakeIdentity) -> None:
    directory, _ = make_identity()
    with pytest.raises(PassphraseError, match="The passphrase does not decrypt"):
        load_identity(directory, b"wrong")


def test_identity_json_pointing_at_another_file_is_refused(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, _ = make_identity()
    doc = json.loads((directory / IDENTITY_FILE).read_text())
    signing = next(k for k in doc["keys"] if k["purpose"] == "signing")
    encryption = next(k for k in doc["keys"] if k["algorithm"] == "x25519")
    signing["file"] = encryption["file"]
    (directory / IDENTITY_FILE).write_text(json.dumps(doc))

    with pytest.raises(KeystoreError):
        load_identity(directory, passphrase)


def test_identity_json_naming_a_path_outside_the_directory_is_refused(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, _ = make_identity()
    doc = json.loads((directory / IDENTITY_FILE).read_text())
    doc["keys"][0]["file"] = "../elsewhere.key"
    (directory / IDENTITY_FILE).write_text(json.dumps(doc))

    with pytest.raises(KeystoreError, match="is not a readable MLAX identity file"):
        load_identity(directory, passphrase)


def test_read_card_without_identity(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match="holds no agency identity"):
        read_card(tmp_path)


def test_card_whose_pin_does_not_match_its_certificate_is_refused(
    make_identity: MakeIdentity,
) -> None:
    _, card = make_identity()
    forged = replace(card, tls_spki_sha256=bytes(32))
    with pytest.raises(InvalidFieldError, match="does not match the certificate"):
        card_from_json(card_to_json(forged))


def test_certificates_work_for_grpc_mutual_tls(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    """Each node presents its own certificate and trusts exactly its peer's."""
    gb_dir, _ = make_identity("GB-NCA", endpoint="127.0.0.1:7401")
    fr_dir, _ = make_identity("FR-OCRTEH", endpoint="node.fr.example:7402")
    stranger_dir, _ = make_identity("DE-BKA", endpoint="node.de.example:7403")
    gb, fr, stranger = (load_identity(d, passphrase) for d in (gb_dir, fr_dir, stranger_dir))

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), options=[("grpc.so_reuseport", 0)]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(gb.tls_private_key_pem(), gb.tls_certificate_pem())],
            root_certificates=fr.tls_certificate_pem(),
            require_client_auth=True,
        ),
    )
    server.start()
    try:

        def check(client: AgencyIdentity) -> health_pb2.HealthCheckResponse:
            creds = grpc.ssl_channel_credentials(
                root_certificates=gb.tls_certificate_pem(),
                private_key=client.tls_private_key_pem(),
                certificate_chain=client.tls_certificate_pem(),
            )
            with grpc.secure_channel(f"127.0.0.1:{port}", creds) as channel:
                return health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )

        assert check(fr).status == health_pb2.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError):
            check(stranger)
    finally:
        server.stop(None)
