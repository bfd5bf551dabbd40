"""Bad input on the federation port of a real node: what a peer sees, and that nothing sticks.

Every test calls FR-OCRTEH's `mlax.v1.Federation/Deliver` directly with raw bytes over
gRPC, as a peer node (or an attacker holding some of a peer's keys) would, and checks
the status code, that FR's inbox is unchanged, and that the refusal was counted
(Prometheus), logged (`envelope_refused`) and ledgered (`message.rejected`).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from exchange._proto.mlax.v1 import officer_pb2 as opb
from exchange.encoding import format_uuid, now_ms
from exchange.envelope import Envelope, Header, MessageType, Sender, seal
from exchange.receipt import Receipt, verify_receipt
from keys.identity import AgencyIdentity, create_identity, load_identity

if TYPE_CHECKING:
    from conftest import LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"
DELIVER = "/mlax.v1.Federation/Deliver"
MiB = 1024 * 1024
MARKER = "CONTENT-MARKER-7f3a"
ROUNDS = 40  # concurrent re-delivery rounds: the race window is narrow


def deliver(channel: grpc.Channel, data: bytes, timeout: float = 10) -> bytes:
    call = channel.unary_unary(DELIVER, request_serializer=None, response_deserializer=None)
    return bytes(call(data, timeout=timeout))


def content(subject: str, text: str = "body") -> bytes:
    return opb.Content(subject=subject, text=text, media_type="text/plain").SerializeToString(
        deterministic=True
    )


def sender_of(live: LiveFederation, agency: str) -> Sender:
    return live.identity(agency).sender(published=live.card(agency))


def sealed(
    live: LiveFederation, frm: str = GB, to: str = FR, subject: str = "bad-input", **kw: object
) -> Envelope:
    kw.setdefault("now_ms", now_ms())
    return seal(
        sender_of(live, frm),
        live.card(to),
        content(subject),
        MessageType.NOTE,
        **kw,  # type: ignore[arg-type]
    )


@dataclass
class Snapshot:
    """What FR holds before a bad delivery, to show afterwards that nothing changed."""

    inbox: set[str]
    received_entries: int
    rejected_entries: int
    refused_logs: int
    rejected_metric: float


def snapshot(live: LiveFederation, reason: str) -> Snapshot:
    ledger = live.ledger_kinds(FR)
    return Snapshot(
        inbox=live.inbox_ids(FR),
        received_entries=sum(1 for k, _ in ledger if k == "message.received"),
        rejected_entries=sum(
            1 for k, f in ledger if k == "message.rejected" and f.get("reason") == reason
        ),
        refused_logs=sum(
            1 for e in live.log_events(FR, "envelope_refused") if e.get("reason") == reason
        ),
        rejected_metric=live.rejected_count(FR, reason),
    )


def assert_refused(
    live: LiveFederation,
    channel: grpc.Channel,
    data: bytes,
    code: grpc.StatusCode,
    reason: str | None,
) -> str:
    """Deliver `data`; assert `code`, nothing stored, and (with `reason`) counted and logged."""
    before = snapshot(live, reason or "-")
    with pytest.raises(grpc.RpcError) as exc:
        deliver(channel, data)
    err: grpc.RpcError = exc.value
    assert err.code() == code, (err.code(), err.details())
    after = snapshot(live, reason or "-")
    assert after.inbox == before.inbox, "a refused envelope reached FR's inbox"
    assert after.received_entries == before.received_entries
    if reason is not None:
        assert after.rejected_metric == before.rejected_metric + 1
        assert after.refused_logs == before.refused_logs + 1
        assert after.rejected_entries == before.rejected_entries + 1
        entry = [f for k, f in live.ledger_kinds(FR) if k == "message.rejected"][-1]
        assert entry["peer"] == GB
        assert entry["status"] == code.name
    assert live.nodes[FR].running, live.nodes[FR].log_tail()
    return str(err.details() or "")


@pytest.fixture(scope="module")
def gb_to_fr(live: LiveFederation) -> grpc.Channel:
    """FR's federation port, reached with GB-NCA's real, pinned TLS credentials."""
    return live.peer_channel(GB, FR)


# -- TLS peers not in the directory ---------------------------------------------------


def _self_signed(subject: x509.Name) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pem_key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def outsider(tmp_path_factory: pytest.TempPathFactory) -> AgencyIdentity:
    """A complete fourth agency identity, DE-BKA, that was never added to the directory."""
    root = tmp_path_factory.mktemp("outsider")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLAX_KDF_PROFILE", "test")
        create_identity(
            root / "de",
            agency_id="DE-BKA",
            name="Bundeskriminalamt",
            endpoint="127.0.0.1:7443",
            passphrase=b"pw",
        )
        return load_identity(root / "de", b"pw")


@pytest.mark.parametrize(
    "who", ["self-signed", "outsider-identity", "gb-subject-new-key", "no-client-cert"]
)
def test_tls_peer_not_in_directory_is_refused(
    live: LiveFederation, gb_to_fr: grpc.Channel, outsider: AgencyIdentity, who: str
) -> None:
    if who == "self-signed":
        key, cert = _self_signed(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "intruder")]))
    elif who == "outsider-identity":
        key, cert = outsider.tls_private_key_pem(), outsider.tls_certificate_pem()
    elif who == "gb-subject-new-key":
        # Same subject as GB-NCA's certificate, so a chain lookup by name finds GB's;
        # the key is not GB's, so neither the handshake nor the pin may admit it.
        gb_cert = x509.load_pem_x509_certificate(live.card(GB).tls_certificate_pem)
        key, cert = _self_signed(gb_cert.subject)
    else:
        key = cert = None
    # A perfectly valid envelope from GB: only the TLS peer is wrong.
    env = sealed(live, subject=f"tls-{who}")
    channel = live.federation_channel(FR, private_key_pem=key, certificate_pem=cert)
    before = live.inbox_ids(FR)
    with pytest.raises(grpc.RpcError) as exc:
        deliver(channel, env.to_bytes())
    # FACTS.md: a client refused in the mTLS handshake sees UNAVAILABLE.
    assert exc.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED}
    assert live.inbox_ids(FR) == before
    assert live.nodes[FR].running
    # The same bytes from the pinned peer are accepted: it was the peer that was refused.
    receipt = Receipt.from_bytes(deliver(gb_to_fr, env.to_bytes())).parsed()
    assert receipt.receiver == FR
    assert live.inbox_ids(FR) - before == {format_uuid(receipt.message_id)}


# -- an envelope that does not match the TLS peer --------------------------------------


def test_envelope_from_another_agency_than_the_tls_peer(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    # Genuinely sealed and signed by NG-NAPTIP, but relayed by GB-NCA's connection.
    env = sealed(live, frm=NG, to=FR, subject="spoofed-peer")
    details = assert_refused(
        live, gb_to_fr, env.to_bytes(), grpc.StatusCode.PERMISSION_DENIED, "PeerMismatchError"
    )
    assert NG in details
    assert GB in details


def test_unknown_sender_agency(
    live: LiveFederation, gb_to_fr: grpc.Channel, outsider: AgencyIdentity
) -> None:
    # Properly sealed and signed by an agency the directory does not list.
    env = seal(
        outsider.sender(), live.card(FR), content("outsider"), MessageType.NOTE, now_ms=now_ms()
    )
    assert_refused(
        live, gb_to_fr, env.to_bytes(), grpc.StatusCode.UNAUTHENTICATED, "UnknownSenderError"
    )


# -- bytes that are not an envelope -----------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"\xff" * 64, "MalformedError", id="invalid-varints"),
        pytest.param(b"this is not a protobuf at all", "MalformedError", id="text"),
        pytest.param(bytes(range(256)) * 4, "MalformedError", id="binary-garbage"),
        pytest.param(b"", "InvalidFieldError", id="empty"),
    ],
)
def test_garbage_is_invalid_argument(
    live: LiveFederation, gb_to_fr: grpc.Channel, data: bytes, reason: str
) -> None:
    assert_refused(live, gb_to_fr, data, grpc.StatusCode.INVALID_ARGUMENT, reason)


def test_unknown_field_appended_to_a_valid_envelope(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    data = sealed(live, subject="unknown-field").to_bytes() + b"\x20\x01"  # field 4, varint 1
    assert_refused(live, gb_to_fr, data, grpc.StatusCode.INVALID_ARGUMENT, "MalformedError")


@pytest.mark.parametrize("keep", [10, 0.5, -1], ids=["first-10-bytes", "half", "all-but-one"])
def test_truncated_envelope_is_invalid_argument(
    live: LiveFederation, gb_to_fr: grpc.Channel, keep: float
) -> None:
    data = sealed(live, subject="truncated").to_bytes()
    cut = int(keep) if keep >= 1 else (len(data) // 2 if keep > 0 else len(data) - 1)
    assert_refused(live, gb_to_fr, data[:cut], grpc.StatusCode.INVALID_ARGUMENT, "MalformedError")


def test_message_beyond_max_message_bytes_is_resource_exhausted(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    # Past the transport limit (limits.max_message_bytes, 4 MiB): gRPC refuses it.
    assert_refused(
        live, gb_to_fr, b"\x00" * (4 * MiB + 1), grpc.StatusCode.RESOURCE_EXHAUSTED, None
    )


def test_envelope_over_the_envelope_limit_is_resource_exhausted(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    # Under the transport limit but over the envelope limit: the node's own check.
    assert_refused(
        live,
        gb_to_fr,
        b"\x00" * (4 * MiB - 16),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "OversizedError",
    )


# -- signatures, replays, recipients, time ------------------------------------------------


@pytest.mark.parametrize("part", ["outer_signature", "ciphertext"])
def test_flipped_bit_is_unauthenticated(
    live: LiveFederation, gb_to_fr: grpc.Channel, part: str
) -> None:
    env = sealed(live, subject=f"flipped-{part}")
    damaged = bytearray(getattr(env, part))
    damaged[len(damaged) // 2] ^= 0x01
    fields = {"header": env.header, "ciphertext": env.ciphertext}
    fields["outer_signature"] = env.outer_signature
    fields[part] = bytes(damaged)
    tampered = Envelope(**fields)
    assert_refused(
        live,
        gb_to_fr,
        tampered.to_bytes(),
        grpc.StatusCode.UNAUTHENTICATED,
        "OuterSignatureError",
    )
    # The intact envelope is still accepted: the refusal did not burn its message id.
    assert Receipt.from_bytes(deliver(gb_to_fr, env.to_bytes())).parsed().receiver == FR


def test_replay_returns_the_original_receipt_and_stores_once(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    env = sealed(live, subject="replayed")
    before = live.inbox_ids(FR)
    first = deliver(gb_to_fr, env.to_bytes())
    second = deliver(gb_to_fr, env.to_bytes())
    assert first == second, "a re-delivery must return the original receipt bytes"
    receipt = verify_receipt(
        Receipt.from_bytes(first),
        live.directory(),
        message_id=_message_id(env),
        envelope_digest=env.digest,
        receiver=FR,
    )
    mid = format_uuid(receipt.message_id)
    assert live.inbox_ids(FR) - before == {mid}
    received = [
        f for k, f in live.ledger_kinds(FR) if k == "message.received" and f["message_id"] == mid
    ]
    assert len(received) == 1, "the replay was processed twice"

    # The same message id under a different envelope is refused, and changes nothing.
    other = sealed(live, subject="replayed, but different", message_id=_message_id(env))
    assert other.digest != env.digest
    assert_refused(live, gb_to_fr, other.to_bytes(), grpc.StatusCode.ALREADY_EXISTS, "ReplayError")
    detail = live.client(FR).show(mid)
    assert detail.subject == "replayed"


def _message_id(env: Envelope) -> bytes:
    return Header.from_bytes(env.header).message_id


def test_envelope_for_another_agency_is_failed_precondition(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    env = sealed(live, frm=GB, to=NG, subject="misrouted")
    assert_refused(
        live, gb_to_fr, env.to_bytes(), grpc.StatusCode.FAILED_PRECONDITION, "WrongRecipientError"
    )


def test_expired_envelope_is_failed_precondition(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    # Created after GB's signing key became valid, expired a moment later.
    not_before = live.card(GB).current_signing_key(now_ms()).not_before
    created = max(not_before + 1, now_ms() - 2_000)
    env = sealed(live, subject="expired", now_ms=created, ttl_ms=100)
    assert created + 100 < now_ms()
    details = assert_refused(
        live,
        gb_to_fr,
        env.to_bytes(),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ExpiredEnvelopeError",
    )
    assert "expired" in details


def test_envelope_from_the_future_is_failed_precondition(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    env = sealed(live, subject="from the future", now_ms=now_ms() + 3_600_000)
    assert_refused(
        live,
        gb_to_fr,
        env.to_bytes(),
        grpc.StatusCode.FAILED_PRECONDITION,
        "ExpiredEnvelopeError",
    )


def test_concurrent_redelivery_returns_the_original_receipt(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    # A sender whose first attempt timed out retries while the first is still being stored:
    # every copy must get the one original receipt (ALREADY_EXISTS would make the sender's
    # worker give up on a message that was in fact delivered).
    rejected_before = sum(1 for k, _ in live.ledger_kinds(FR) if k == "message.rejected")
    before = live.inbox_ids(FR)
    outcomes: list[tuple[str, bytes]] = []
    for round_ in range(ROUNDS):
        data = sealed(live, subject=f"concurrent {round_}").to_bytes()
        barrier = threading.Barrier(8)

        def one(
            _: int, data: bytes = data, barrier: threading.Barrier = barrier
        ) -> tuple[str, bytes]:
            barrier.wait()
            try:
                return "OK", deliver(gb_to_fr, data)
            except grpc.RpcError as e:
                return e.code().name, (e.details() or "").encode()

        with cf.ThreadPoolExecutor(8) as pool:
            outcomes += pool.map(one, range(8))
    assert {status for status, _ in outcomes} == {"OK"}, [o for o in outcomes if o[0] != "OK"]
    assert len({receipt for _, receipt in outcomes}) == ROUNDS, "one receipt per envelope"
    new = live.inbox_ids(FR) - before
    assert len(new) == ROUNDS
    ledger = live.ledger_kinds(FR)
    received = [f["message_id"] for k, f in ledger if k == "message.received"]
    assert all(received.count(mid) == 1 for mid in new)
    assert sum(1 for k, _ in ledger if k == "message.rejected") == rejected_before


# -- and the node is still fine -----------------------------------------------------------


def test_node_survives_bad_input_and_accepts_normal_delivery(
    live: LiveFederation, gb_to_fr: grpc.Channel
) -> None:
    assert live.nodes[FR].running, live.nodes[FR].log_tail()
    # Directly, as a peer:
    env = seal(
        sender_of(live, GB),
        live.card(FR),
        content("after the storm", MARKER),
        MessageType.NOTE,
        now_ms=now_ms(),
    )
    receipt = Receipt.from_bytes(deliver(gb_to_fr, env.to_bytes())).parsed()
    mid = format_uuid(receipt.message_id)
    assert live.client(FR).show(mid).text == MARKER
    # And through GB's node, as officers do:
    gb = live.client(GB)
    sent = gb.send(FR, subject="still there?", text=MARKER)
    live.wait_delivered(gb, sent.message_id)
    assert live.client(FR).show(sent.message_id).text == MARKER
    # Logs never carry content.
    for proc in live.nodes.values():
        assert MARKER not in proc.log_path.read_text(errors="replace")
