"""The published test vectors (docs/vectors/) against the protocol code.

Everything deterministic is recomputed from the fixed inputs recorded in the vectors
and must match bit for bit: PAE encodings, key ids, header, directory and receipt bytes,
Ed25519 signatures (deterministic by RFC 8032) and digests. HPKE ciphertexts cannot be
recomputed (the ephemeral key is random), so the recorded ones must open with the fixed
recipient keys. Every refusal in the vectors must fail with exactly the named error.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from nacl.signing import SigningKey

from exchange import errors
from exchange._proto.mlax.v1 import directory_pb2 as dpb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange.agency import AgencyCard, KeyAlgorithm, PublicKey, RevokedKey
from exchange.directory import AdminKey, Directory, SignedDirectory, verify_directory
from exchange.encoding import (
    CTX_DIRECTORY,
    CTX_ENVELOPE_DIGEST,
    CTX_ENVELOPE_HPKE_INFO,
    CTX_ENVELOPE_INNER,
    CTX_ENVELOPE_OUTER,
    CTX_KEY_ID,
    CTX_RECEIPT,
    format_uuid,
    key_id,
    pae,
    sha256,
    uuid7,
)
from exchange.envelope import (
    AttachmentDigest,
    DecryptionKey,
    Envelope,
    HandlingCode,
    Header,
    Limits,
    MemorySeenIds,
    MessageType,
    Recipient,
    Suite,
    hpke_info,
    open_envelope,
    verify_bundle,
)
from exchange.receipt import Receipt, ReceiptBody, verify_receipt

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
ENVELOPE_FILES = ("envelope_x25519.json", "envelope_mlkem768x25519.json")


@cache
def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return doc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def expect_error(case: dict[str, Any], call: Callable[[], object]) -> None:
    """`call` fails with exactly the error class the vector names, whose status it states."""
    cls = getattr(errors, case["error"])
    assert issubclass(cls, errors.MlaxError)
    assert cls.status == case["status"]
    with pytest.raises(cls) as raised:
        call()
    assert type(raised.value) is cls


def cases(name: str, key: str) -> list[Any]:
    return [pytest.param(c, id=c["name"]) for c in load(name)[key]]


# --- PAE and key ids ------------------------------------------------------------------------


@pytest.mark.parametrize("case", cases("pae.json", "cases"))
def test_pae(case: dict[str, Any]) -> None:
    assert pae(*(h(p) for p in case["pieces"])) == h(case["pae"])


def test_contexts_are_the_protocols() -> None:
    assert load("pae.json")["contexts"] == {
        "envelope_outer": CTX_ENVELOPE_OUTER.decode(),
        "envelope_inner": CTX_ENVELOPE_INNER.decode(),
        "envelope_hpke_info": CTX_ENVELOPE_HPKE_INFO.decode(),
        "envelope_digest": CTX_ENVELOPE_DIGEST.decode(),
        "receipt": CTX_RECEIPT.decode(),
        "directory": CTX_DIRECTORY.decode(),
        "key_id": CTX_KEY_ID.decode(),
    }


def hybrid_parts(xwing_seed: bytes) -> tuple[bytes, bytes]:
    """(ML-KEM-768 seed d||z, X25519 private key) expanded from an X-Wing seed."""
    expanded = hashlib.shake_256(xwing_seed).digest(96)
    return expanded[:64], expanded[64:]


def public_from_private(label: str, entry: dict[str, str]) -> bytes:
    if label == "ed25519":
        return bytes(SigningKey(h(entry["seed"])).verify_key)
    if label == "x25519":
        x = x25519.X25519PrivateKey.from_private_bytes(h(entry["x25519_private_key"]))
        return x.public_key().public_bytes_raw()
    d_z, x_priv = hybrid_parts(h(entry["xwing_seed"]))
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(d_z)
    x = x25519.X25519PrivateKey.from_private_bytes(x_priv)
    return m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()


@pytest.mark.parametrize("entry", cases("key_ids.json", "keys"))
def test_key_id(entry: dict[str, Any]) -> None:
    label, public = entry["algorithm_label"], h(entry["public_key"])
    assert public_from_private(label, entry) == public
    assert pae(CTX_KEY_ID, label.encode(), public) == h(entry["pae_input"])
    assert sha256(h(entry["pae_input"])) == h(entry["sha256"])
    assert key_id(label, public) == entry["key_id"] == entry["sha256"][:32]


# --- directory ------------------------------------------------------------------------------


def public_key(k: dict[str, Any]) -> PublicKey:
    key = PublicKey(
        KeyAlgorithm(dpb.KeyAlgorithm.Value(k["algorithm"])),
        h(k["public_key"]),
        k["not_before"],
        k["not_after"],
    )
    assert key.key_id == k["key_id"]
    return key


def directory_from_fields(f: dict[str, Any]) -> Directory:
    admins = []
    for a in f["admins"]:
        admin = AdminKey(a["name"], h(a["public_key"]))
        assert admin.key_id == a["key_id"]
        admins.append(admin)
    return Directory(
        federation_id=f["federation_id"],
        version=f["version"],
        issued_at=f["issued_at"],
        expires_at=f["expires_at"],
        threshold=f["threshold"],
        admins=tuple(admins),
        agencies=tuple(
            AgencyCard(
                agency_id=c["agency_id"],
                name=c["name"],
                country=c["country"],
                endpoint=c["endpoint"],
                tls_spki_sha256=h(c["tls_spki_sha256"]),
                tls_certificate_pem=c["tls_certificate_pem"].encode("ascii"),
                signing_keys=tuple(public_key(k) for k in c["signing_keys"]),
                encryption_keys=tuple(public_key(k) for k in c["encryption_keys"]),
                revoked_keys=tuple(
                    RevokedKey(r["key_id"], r["revoked_at"], r["reason"]) for r in c["revoked_keys"]
                ),
            )
            for c in f["agencies"]
        ),
    )


def directory_fields(version: str) -> dict[str, Any]:
    dirs = load("directory.json")["directories"]
    fields: dict[str, Any] = dict(dirs["v1"]["fields"])
    if version != "v1":
        fields.update(dirs[version]["fields_changed_from_v1"])
    return fields


def admin_seeds() -> dict[str, bytes]:
    doc = load("directory.json")
    keys = [*doc["admins"], doc["outsider"]]
    return {k["key_id"]: h(k["seed"]) for k in keys}


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_directory_bytes_and_signatures(version: str) -> None:
    entry = load("directory.json")["directories"][version]
    directory = directory_from_fields(directory_fields(version))
    data = h(entry["directory"])
    assert directory.to_bytes() == data
    assert Directory.from_bytes(data) == directory

    prefix = h(entry["signing_input_prefix"])
    assert prefix + data == pae(CTX_DIRECTORY, data)
    seeds = admin_seeds()
    signatures = []
    for s in entry["signatures"]:
        sig = SigningKey(seeds[s["key_id"]]).sign(prefix + data).signature
        assert sig == h(s["signature"])
        signatures.append((s["key_id"], sig))
    signed = SignedDirectory(data, tuple(signatures))
    assert signed.to_bytes() == h(entry["signed_directory"])
    assert SignedDirectory.from_bytes(h(entry["signed_directory"])) == signed


def test_directory_file_form() -> None:
    v1 = load("directory.json")["directories"]["v1"]
    form = v1["file_form"]
    assert form["format"] == "mlax-directory/v1"
    signed = SignedDirectory(
        base64.b64decode(form["directory"], validate=True),
        tuple(
            (s["key_id"], base64.b64decode(s["signature"], validate=True))
            for s in form["signatures"]
        ),
    )
    assert signed.to_bytes() == h(v1["signed_directory"])


def test_tls_pins_are_the_certificates_keys() -> None:
    for card in directory_fields("v1")["agencies"]:
        cert = x509.load_pem_x509_certificate(card["tls_certificate_pem"].encode("ascii"))
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        assert sha256(spki) == h(card["tls_spki_sha256"])


def signed_directory(name: str) -> bytes:
    doc = load("directory.json")
    if name in doc["directories"]:
        return h(doc["directories"][name]["signed_directory"])
    return h(doc["signed_directories"][name])


@cache
def trusted_v1() -> Directory:
    return verify_directory(signed_directory("v1"), None, directory_fields("v1")["issued_at"])


@pytest.mark.parametrize("case", cases("directory.json", "verify_cases"))
def test_directory_verification(case: dict[str, Any]) -> None:
    data = signed_directory(case["signed_directory"])
    trusted = trusted_v1() if case["trusted"] == "v1" else None
    if "error" in case:
        expect_error(case, lambda: verify_directory(data, trusted, case["now_ms"]))
        return
    got = verify_directory(data, trusted, case["now_ms"])
    assert got.version == case["accepted_version"]
    assert got == directory_from_fields(directory_fields(f"v{got.version}"))


# --- envelopes ------------------------------------------------------------------------------


def header_from_fields(f: dict[str, Any]) -> Header:
    assert f["protocol_version"] == 1
    return Header(
        message_id=h(f["message_id"]),
        sender=f["sender"],
        recipient=f["recipient"],
        message_type=MessageType(epb.MessageType.Value(f["message_type"])),
        created_at=f["created_at"],
        expires_at=f["expires_at"],
        sender_key_id=f["sender_key_id"],
        recipient_key_id=f["recipient_key_id"],
        suite=Suite(epb.HpkeSuite.Value(f["suite"])),
        case_ref=f["case_ref"],
        handling_codes=tuple(HandlingCode(epb.HandlingCode.Value(c)) for c in f["handling_codes"]),
        attachments=tuple(
            AttachmentDigest(a["name"], h(a["sha256"]), a["size"]) for a in f["attachments"]
        ),
        restricted_to=tuple(f["restricted_to"]),
        in_reply_to=h(f["in_reply_to"]),
    )


def decryption_key(entry: dict[str, str]) -> tuple[str, DecryptionKey, bytes]:
    """(key id, private key, published public key) of a recipient's encryption key."""
    if entry["algorithm"] == "KEY_ALGORITHM_X25519":
        x = x25519.X25519PrivateKey.from_private_bytes(h(entry["x25519_private_key"]))
        public = x.public_key().public_bytes_raw()
        assert key_id("x25519", public) == entry["key_id"]
        return entry["key_id"], x, public
    d_z, x_priv = hybrid_parts(h(entry["xwing_seed"]))
    assert (d_z, x_priv) == (h(entry["mlkem768_seed_d_z"]), h(entry["x25519_private_key"]))
    m = mlkem.MLKEM768PrivateKey.from_seed_bytes(d_z)
    x = x25519.X25519PrivateKey.from_private_bytes(x_priv)
    public = m.public_key().public_bytes_raw() + x.public_key().public_bytes_raw()
    assert public.hex() == entry["mlkem768_public_key"] + entry["x25519_public_key"]
    assert key_id("mlkem768-x25519", public) == entry["key_id"]
    return entry["key_id"], hpke.MLKEM768X25519PrivateKey(m, x), public


def recipient(doc: dict[str, Any]) -> Recipient:
    kid, private, _ = decryption_key(doc["recipient"]["encryption_key"])
    return Recipient(doc["open"]["recipient"], {kid: private})


@pytest.mark.parametrize("name", ENVELOPE_FILES)
def test_envelope_deterministic_parts(name: str) -> None:
    doc = load(name)
    signer = doc["sender"]["signing_key"]
    sk = SigningKey(h(signer["seed"]))
    assert key_id("ed25519", bytes(sk.verify_key)) == signer["key_id"]
    _, _, public = decryption_key(doc["recipient"]["encryption_key"])
    assert public == h(doc["recipient"]["encryption_key"]["public_key"])

    mid = doc["message_id"]
    assert uuid7(mid["unix_ms"], h(mid["rand"])) == h(mid["bytes"])
    assert format_uuid(h(mid["bytes"])) == mid["text"]

    header = h(doc["header"])
    assert header_from_fields(doc["header_fields"]).to_bytes() == header
    body = h(doc["body"])

    inner_input = pae(CTX_ENVELOPE_INNER, header, body)
    assert inner_input == h(doc["inner_signing_input"])
    inner = sk.sign(inner_input).signature
    assert inner == h(doc["inner_signature"])
    sealed = epb.SealedBody(body=body, inner_signature=inner).SerializeToString(deterministic=True)
    assert sealed == h(doc["sealed_body"])

    hp = doc["hpke"]
    assert hpke_info(header) == h(hp["info"])
    ciphertext = h(doc["ciphertext"])
    assert ciphertext[: hp["enc_length"]] == h(hp["enc"])
    suite = Suite(epb.HpkeSuite.Value(hp["suite"]))
    expected_kem = {
        Suite.X25519_SHA256_CHACHA20POLY1305: ("0x0020", 32),
        Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305: ("0x647a", 1120),
    }[suite]
    assert (hp["kem_id"], hp["enc_length"]) == expected_kem
    # ChaCha20-Poly1305 adds a 16-byte tag and nothing else.
    assert len(ciphertext) == hp["enc_length"] + len(sealed) + 16

    outer_input = pae(CTX_ENVELOPE_OUTER, header, ciphertext)
    assert outer_input == h(doc["outer_signing_input"])
    outer = sk.sign(outer_input).signature
    assert outer == h(doc["outer_signature"])
    envelope = Envelope(header, ciphertext, outer)
    assert envelope.to_bytes() == h(doc["envelope"])
    assert envelope.digest == h(doc["envelope_digest"])
    assert sha256(pae(CTX_ENVELOPE_DIGEST, header, ciphertext, outer)) == envelope.digest


@pytest.mark.parametrize("name", ENVELOPE_FILES)
def test_envelope_opens_to_the_recorded_body(name: str) -> None:
    doc = load(name)
    _, private, _ = decryption_key(doc["recipient"]["encryption_key"])
    suite = Suite(epb.HpkeSuite.Value(doc["hpke"]["suite"]))
    sealed = suite.hpke.decrypt(h(doc["ciphertext"]), private, info=h(doc["hpke"]["info"]))
    assert sealed == h(doc["sealed_body"])

    opened = open_envelope(
        h(doc["envelope"]),
        trusted_v1(),
        recipient(doc),
        MemorySeenIds(),
        now_ms=doc["open"]["now_ms"],
    )
    assert opened.body == h(doc["body"])
    assert opened.inner_signature == h(doc["inner_signature"])
    assert opened.header == header_from_fields(doc["header_fields"])
    assert opened.non_repudiation_bundle() == h(doc["non_repudiation_bundle"])

    statement = verify_bundle(h(doc["non_repudiation_bundle"]), trusted_v1())
    assert statement.body == h(doc["body"])
    assert statement.header == opened.header
    assert not statement.key_revoked_later


def negative_cases() -> list[Any]:
    return [
        pytest.param(name, c, id=f"{name.removesuffix('.json')}: {c['name']}")
        for name in ENVELOPE_FILES
        for c in load(name)["negative"]
    ]


@pytest.mark.parametrize(("name", "case"), negative_cases())
def test_envelope_refusal(name: str, case: dict[str, Any]) -> None:
    doc = load(name)
    data = h(case.get("envelope", doc["envelope"]))
    who = recipient(doc)
    if "recipient" in case:
        who = Recipient(case["recipient"], {})
    if case.get("recipient_holds_no_key"):
        who = Recipient(who.agency_id, {})
    seen = MemorySeenIds()
    for sender, mid in case.get("seen", []):
        seen.add(sender, h(mid))
    now = case.get("now_ms", doc["open"]["now_ms"])
    limits = Limits(**case.get("limits", {}))
    expect_error(
        case, lambda: open_envelope(data, trusted_v1(), who, seen, now_ms=now, limits=limits)
    )


@pytest.mark.parametrize("case", cases("envelope_mlkem768x25519.json", "bundle_cases"))
def test_bundle_signed_by_a_key_revoked_later(case: dict[str, Any]) -> None:
    data = h(case["bundle"])
    if "error" in case:
        expect_error(case, lambda: verify_bundle(data, trusted_v1()))
        return
    assert verify_bundle(data, trusted_v1()).key_revoked_later is case["key_revoked_later"]


# --- receipts -------------------------------------------------------------------------------


def test_receipt_bytes_and_signature() -> None:
    doc = load("receipt.json")
    f = doc["body_fields"]
    body = ReceiptBody(
        message_id=h(f["message_id"]),
        sender=f["sender"],
        receiver=f["receiver"],
        envelope_digest=h(f["envelope_digest"]),
        received_at=f["received_at"],
        receiver_key_id=f["receiver_key_id"],
        ledger_index=f["ledger_index"],
    ).to_bytes()
    assert body == h(doc["body"])
    envelope = load("envelope_mlkem768x25519.json")
    assert f["envelope_digest"] == envelope["envelope_digest"]
    assert f["message_id"] == envelope["message_id"]["bytes"]

    signing_input = pae(CTX_RECEIPT, body)
    assert signing_input == h(doc["signing_input"])
    sk = SigningKey(h(doc["receiver_signing_key"]["seed"]))
    assert key_id("ed25519", bytes(sk.verify_key)) == f["receiver_key_id"]
    signature = sk.sign(signing_input).signature
    assert signature == h(doc["signature"])
    receipt = Receipt(body, signature)
    assert receipt.to_bytes() == h(doc["receipt"])

    got = verify_receipt(
        Receipt.from_bytes(h(doc["receipt"])),
        trusted_v1(),
        message_id=h(f["message_id"]),
        envelope_digest=h(f["envelope_digest"]),
        receiver=f["receiver"],
    )
    assert got.ledger_index == f["ledger_index"]


@pytest.mark.parametrize("case", cases("receipt.json", "negative"))
def test_receipt_refusal(case: dict[str, Any]) -> None:
    receipt = Receipt.from_bytes(h(case["receipt"]))
    receiver = load("receipt.json")["body_fields"]["receiver"]
    expect_error(
        case,
        lambda: verify_receipt(
            receipt,
            trusted_v1(),
            message_id=h(case["message_id"]),
            envelope_digest=h(case["envelope_digest"]),
            receiver=receiver,
        ),
    )


def test_vectors_stay_small() -> None:
    assert sum(p.stat().st_size for p in VECTORS.glob("*.json")) < 200 * 1024
