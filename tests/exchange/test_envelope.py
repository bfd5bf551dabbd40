"""Sealing and opening envelopes: what a receiving peer accepts, and each rejection it makes."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from factories import (
    DAY,
    HOUR,
    MINUTE,
    T0,
    YEAR,
    FederationSimulator,
    SimAgency,
    forge_envelope,
    make_header,
    resign_outer,
)
from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import envelope_pb2
from exchange.agency import KeyAlgorithm
from exchange.directory import Directory
from exchange.encoding import CTX_ENVELOPE_INNER, pae, uuid7
from exchange.envelope import (
    DEFAULT_LIMITS,
    AttachmentDigest,
    Envelope,
    HandlingCode,
    Header,
    Limits,
    MemorySeenIds,
    MessageType,
    Opened,
    Recipient,
    Suite,
    authenticate,
    open_envelope,
    seal,
    verify_bundle,
)
from exchange.errors import (
    DecryptionError,
    ExpiredEnvelopeError,
    InnerSignatureError,
    InvalidFieldError,
    KeyNotValidError,
    MalformedError,
    MlaxError,
    OuterSignatureError,
    OversizedError,
    ReplayError,
    RevokedKeyError,
    UnknownKeyError,
    UnknownSenderError,
    WrongRecipientError,
)


def _open(
    envelope: Envelope | bytes,
    directory: Directory,
    receiver: SimAgency,
    *,
    now: int = T0,
    seen: MemorySeenIds | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Opened:
    data = envelope.to_bytes() if isinstance(envelope, Envelope) else envelope
    return open_envelope(
        data,
        directory,
        receiver.recipient(),
        seen or MemorySeenIds(),
        now_ms=now,
        limits=limits,
    )


def _break_outer(envelope: Envelope) -> Envelope:
    sig = bytearray(envelope.outer_signature)
    sig[0] ^= 0x01
    return Envelope(envelope.header, envelope.ciphertext, bytes(sig))


# --- round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("receiver_name", "suite"),
    [
        ("receiver", Suite.X25519_SHA256_CHACHA20POLY1305),
        ("pq_receiver", Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305),
    ],
)
def test_round_trip_preserves_every_header_field_and_the_body(
    request: pytest.FixtureRequest,
    sender: SimAgency,
    directory: Directory,
    receiver_name: str,
    suite: Suite,
) -> None:
    receiver: SimAgency = request.getfixturevalue(receiver_name)
    body = b"Request for the bank records of account 123; see attached affidavit."
    attachment = AttachmentDigest("affidavit.pdf", hashlib.sha256(b"pdf").digest(), 3)
    earlier = uuid7(T0 - HOUR)
    envelope = seal(
        sender.sender(),
        receiver.card,
        body,
        MessageType.MLA_REQUEST,
        now_ms=T0,
        ttl_ms=7 * DAY,
        case_ref="FR/2026/00042",
        handling_codes=(
            HandlingCode.NO_ONWARD_TRANSMISSION,
            HandlingCode.RESTRICTED_TO_NAMED_OFFICERS,
        ),
        attachments=(attachment,),
        restricted_to=("officer.martin", "officer.dupont"),
        in_reply_to=earlier,
    )

    opened = _open(envelope, directory, receiver, now=T0 + MINUTE)

    assert opened.body == body
    h = opened.header
    assert h.suite is suite
    assert h.sender == sender.agency_id
    assert h.recipient == receiver.agency_id
    assert h.message_type is MessageType.MLA_REQUEST
    assert h.case_ref == "FR/2026/00042"
    assert h.handling_codes == (
        HandlingCode.NO_ONWARD_TRANSMISSION,
        HandlingCode.RESTRICTED_TO_NAMED_OFFICERS,
    )
    assert h.attachments == (attachment,)
    assert h.restricted_to == ("officer.martin", "officer.dupont")
    assert h.in_reply_to == earlier
    assert h.created_at == T0
    assert h.expires_at == T0 + 7 * DAY
    assert h.sender_key_id == sender.signing_public.key_id
    assert h.recipient_key_id == receiver.card.current_encryption_key(T0).key_id
    assert h.message_id[6] >> 4 == 7
    assert opened.envelope == envelope
    # The header travels as the exact bytes that were signed.
    assert Header.from_bytes(envelope.header) == h
    assert Envelope.from_bytes(envelope.to_bytes()) == envelope


def test_card_offering_both_kinds_of_key_gets_the_hybrid_suite(
    federation: FederationSimulator, sender: SimAgency
) -> None:
    both = federation.add_agency("BE-FGP", hybrid=True, x25519_too=True)
    # The X25519 key is the newer one: the hybrid key is still preferred.
    both.add_encryption_key(hybrid=False, not_before=T0 - MINUTE)
    envelope = seal(sender.sender(), both.card, b"x", MessageType.NOTE, now_ms=T0)
    header = Header.from_bytes(envelope.header)
    assert header.suite is Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305
    hybrid_key = next(
        k for k in both.card.encryption_keys if k.algorithm is KeyAlgorithm.MLKEM768_X25519
    )
    assert header.recipient_key_id == hybrid_key.key_id
    assert _open(envelope, federation.directory(), both).body == b"x"


def test_empty_body_round_trips(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"", MessageType.NOTE, now_ms=T0)
    assert _open(envelope, directory, receiver).body == b""


def test_body_at_the_size_limit_round_trips(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    body = bytes(range(256)) * (DEFAULT_LIMITS.max_body_bytes // 256)
    assert len(body) == DEFAULT_LIMITS.max_body_bytes
    envelope = seal(sender.sender(), receiver.card, body, MessageType.NOTE, now_ms=T0)
    assert _open(envelope, directory, receiver).body == body


def test_body_over_the_size_limit_is_refused_at_sealing(
    sender: SimAgency, receiver: SimAgency
) -> None:
    body = b"\0" * (DEFAULT_LIMITS.max_body_bytes + 1)
    with pytest.raises(OversizedError):
        seal(sender.sender(), receiver.card, body, MessageType.NOTE, now_ms=T0)


def test_envelope_over_the_size_limit_is_refused_before_parsing(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x" * 2048, MessageType.NOTE, now_ms=T0)
    data = envelope.to_bytes()
    small = Limits(max_envelope_bytes=len(data) - 1)
    with pytest.raises(OversizedError):
        _open(data, directory, receiver, limits=small)
    # Over the limit, not even valid protobuf is looked at.
    with pytest.raises(OversizedError):
        _open(b"\xff" * len(data), directory, receiver, limits=small)
    assert _open(data, directory, receiver, limits=Limits(max_envelope_bytes=len(data))).body


def test_header_over_its_size_limit_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    limits = Limits(max_header_bytes=len(envelope.header) - 1)
    with pytest.raises(OversizedError):
        _open(envelope, directory, receiver, limits=limits)


def test_header_limits_are_enforced_at_sealing(sender: SimAgency, receiver: SimAgency) -> None:
    too_long_ref = "R" * (DEFAULT_LIMITS.max_case_ref_chars + 1)
    with pytest.raises(OversizedError):
        seal(
            sender.sender(), receiver.card, b"", MessageType.NOTE, now_ms=T0, case_ref=too_long_ref
        )
    officers = tuple(f"officer{i}" for i in range(DEFAULT_LIMITS.max_named_officers + 1))
    with pytest.raises(OversizedError):
        seal(
            sender.sender(), receiver.card, b"", MessageType.NOTE, now_ms=T0, restricted_to=officers
        )
    with pytest.raises(InvalidFieldError):
        seal(
            sender.sender(),
            receiver.card,
            b"",
            MessageType.NOTE,
            now_ms=T0,
            ttl_ms=DEFAULT_LIMITS.max_lifetime_ms + 1,
        )
    with pytest.raises(InvalidFieldError):
        seal(sender.sender(), receiver.card, b"", MessageType.NOTE, now_ms=T0, in_reply_to=b"short")


def test_two_seals_of_one_body_differ(sender: SimAgency, receiver: SimAgency) -> None:
    a = seal(sender.sender(), receiver.card, b"same", MessageType.NOTE, now_ms=T0)
    b = seal(sender.sender(), receiver.card, b"same", MessageType.NOTE, now_ms=T0)
    assert a.header != b.header  # fresh message id
    assert a.ciphertext != b.ciphertext  # fresh HPKE encapsulation
    assert a.digest != b.digest


def test_body_is_not_in_the_clear(sender: SimAgency, receiver: SimAgency) -> None:
    secret = b"victim name: Jane Doe, born 1990-01-01"
    data = seal(sender.sender(), receiver.card, secret, MessageType.NOTE, now_ms=T0).to_bytes()
    assert secret not in data
    assert b"Jane" not in data


# --- rejection paths, each with its error ----------------------------------------------------


def test_envelope_for_another_agency_is_wrong_recipient(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    with pytest.raises(WrongRecipientError):
        _open(envelope, directory, pq_receiver)


def test_envelope_to_a_key_we_do_not_hold_is_wrong_recipient(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    holder = Recipient(receiver.agency_id, {})
    with pytest.raises(WrongRecipientError):
        open_envelope(envelope.to_bytes(), directory, holder, MemorySeenIds(), now_ms=T0)
    # Holding a different key of our own does not help either.
    other = SimAgency(receiver.agency_id, "DE")
    other.add_encryption_key()
    with pytest.raises(WrongRecipientError):
        open_envelope(envelope.to_bytes(), directory, other.recipient(), MemorySeenIds(), now_ms=T0)


def test_sender_not_in_the_directory_is_unknown(
    federation: FederationSimulator, receiver: SimAgency
) -> None:
    outsider = federation.add_agency("IT-SCO")
    envelope = seal(outsider.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    del federation.agencies["IT-SCO"]
    with pytest.raises(UnknownSenderError):
        _open(envelope, federation.directory(), receiver)


def test_signing_key_not_listed_for_the_sender_is_unknown_key(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    rogue = SigningKey.generate()
    envelope = seal(sender.sender(rogue), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    with pytest.raises(UnknownKeyError):
        _open(envelope, directory, receiver)


def test_signing_key_of_another_agency_is_unknown_key(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    # A member cannot speak for another: the key id is looked up under the named sender.
    envelope = seal(
        sender.sender(pq_receiver.signing_key), receiver.card, b"x", MessageType.NOTE, now_ms=T0
    )
    with pytest.raises(UnknownKeyError):
        _open(envelope, directory, receiver)


def test_revoked_signing_key_is_refused_at_once_even_for_older_envelopes(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    before = federation.directory()
    assert _open(envelope, before, receiver, now=T0 + 2 * HOUR).body == b"x"
    # Revoked an hour after the envelope was created, then opened: refused.
    sender.revoke(sender.signing_public.key_id, T0 + HOUR, "key compromise")
    with pytest.raises(RevokedKeyError):
        _open(envelope, federation.directory(), receiver, now=T0 + 2 * HOUR)


def test_envelope_sealed_to_our_revoked_encryption_key_is_refused(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    header = Header.from_bytes(envelope.header)
    # We withdrew that key (say it leaked): what is sealed to it is no longer trusted.
    receiver.revoke(header.recipient_key_id, T0 + HOUR, "key compromise")
    with pytest.raises(RevokedKeyError):
        _open(envelope, federation.directory(), receiver, now=T0 + 2 * HOUR)


def test_revocation_of_the_signing_key_comes_before_the_outer_signature(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    envelope = _break_outer(seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0))
    sender.revoke(sender.signing_public.key_id, T0 + HOUR)
    with pytest.raises(RevokedKeyError):
        _open(envelope, federation.directory(), receiver)


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        (T0 + 1, T0 + YEAR),  # not yet valid at created_at
        (T0 - YEAR, T0),  # not_after is exclusive: expired exactly at created_at
        (T0 - YEAR, T0 - DAY),  # long expired
    ],
)
def test_signing_key_outside_its_validity_at_created_at(
    federation: FederationSimulator,
    sender: SimAgency,
    receiver: SimAgency,
    not_before: int,
    not_after: int,
) -> None:
    key, _ = sender.add_signing_key(not_before, not_after)
    envelope = seal(sender.sender(key), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    with pytest.raises(KeyNotValidError):
        _open(envelope, federation.directory(), receiver)


def test_signing_key_validity_is_judged_at_created_at_not_at_opening(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    key, _ = sender.add_signing_key(T0 - DAY, T0 + HOUR)
    envelope = seal(sender.sender(key), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    # The key expired since; the envelope was made while it was valid.
    assert _open(envelope, federation.directory(), receiver, now=T0 + 2 * HOUR).body == b"x"


def test_rotation_overlap_both_keys_accepted(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    old_key, old_pub = sender.signing[0]
    new_key, _ = sender.add_signing_key(T0 - HOUR, T0 + YEAR)
    directory = federation.directory()
    for key in (old_key, new_key):
        envelope = seal(sender.sender(key), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
        assert _open(envelope, directory, receiver).body == b"x"
    assert sender.card.current_signing_key(T0).key_id != old_pub.key_id


def test_expired_envelope_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, ttl_ms=DAY)
    assert _open(envelope, directory, receiver, now=T0 + DAY - 1).body == b"x"
    with pytest.raises(ExpiredEnvelopeError):
        _open(envelope, directory, receiver, now=T0 + DAY)
    with pytest.raises(ExpiredEnvelopeError):
        _open(envelope, directory, receiver, now=T0 + 30 * DAY)


def test_envelope_from_the_future_beyond_the_clock_skew_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    skew = DEFAULT_LIMITS.max_clock_skew_ms
    within = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0 + skew)
    assert _open(within, directory, receiver, now=T0).body == b"x"
    beyond = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0 + skew + 1)
    with pytest.raises(ExpiredEnvelopeError):
        _open(beyond, directory, receiver, now=T0)
    far = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0 + 10 * MINUTE)
    with pytest.raises(ExpiredEnvelopeError):
        _open(far, directory, receiver, now=T0)


def test_replayed_message_id_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    seen = MemorySeenIds()
    opened = _open(envelope, directory, receiver, seen=seen)
    seen.add(opened.header.sender, opened.header.message_id)
    with pytest.raises(ReplayError):
        _open(envelope, directory, receiver, seen=seen)
    # A re-sealed body under the same message id is the same message: still a replay.
    again = seal(
        sender.sender(),
        receiver.card,
        b"y",
        MessageType.NOTE,
        now_ms=T0,
        message_id=opened.header.message_id,
    )
    with pytest.raises(ReplayError):
        _open(again, directory, receiver, seen=seen)


def test_same_message_id_from_another_sender_is_not_a_replay(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    other = federation.add_agency("ES-CNP")
    directory = federation.directory()
    mid = uuid7(T0)
    seen = MemorySeenIds()
    seen.add(sender.agency_id, mid)
    envelope = seal(
        other.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, message_id=mid
    )
    assert _open(envelope, directory, receiver, seen=seen).body == b"x"


def test_inner_signature_over_another_body_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    good = forge_envelope(sender.signing_key, header, b"pay 100", key)
    assert _open(good, directory, receiver).body == b"pay 100"
    envelope = forge_envelope(sender.signing_key, header, b"pay 100", key, inner_body=b"pay 10000")
    with pytest.raises(InnerSignatureError):
        _open(envelope, directory, receiver)


def test_inner_signature_over_another_header_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card, case_ref="A").to_bytes()
    other = make_header(sender, receiver.card, case_ref="B").to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(sender.signing_key, header, b"x", key, inner_header=other)
    with pytest.raises(InnerSignatureError):
        _open(envelope, directory, receiver)


def test_inner_signature_by_another_key_is_refused(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(
        sender.signing_key, header, b"x", key, inner_signing_key=pq_receiver.signing_key
    )
    with pytest.raises(InnerSignatureError):
        _open(envelope, directory, receiver)


def test_inner_signature_missing_or_malformed_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    for inner in (b"", b"\0" * 64, b"\x01" * 63, b"\x02" * 65):
        sealed = envelope_pb2.SealedBody(body=b"x", inner_signature=inner).SerializeToString()
        envelope = forge_envelope(sender.signing_key, header, b"x", key, sealed_body=sealed)
        with pytest.raises(InnerSignatureError):
            _open(envelope, directory, receiver)


def test_sealed_body_that_is_not_protobuf_is_malformed(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(sender.signing_key, header, b"", key, sealed_body=b"\xff\xff\xff")
    with pytest.raises(MalformedError):
        _open(envelope, directory, receiver)


@pytest.mark.parametrize("receiver_name", ["receiver", "pq_receiver"])
def test_ciphertext_bound_to_another_header_does_not_decrypt(
    request: pytest.FixtureRequest, sender: SimAgency, directory: Directory, receiver_name: str
) -> None:
    receiver: SimAgency = request.getfixturevalue(receiver_name)
    header = make_header(sender, receiver.card, case_ref="A").to_bytes()
    other = make_header(sender, receiver.card, case_ref="B").to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(sender.signing_key, header, b"x", key, info_header=other)
    with pytest.raises(DecryptionError):
        _open(envelope, directory, receiver)


def test_ciphertext_moved_under_another_header_does_not_decrypt(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    # A sender cannot reuse one ciphertext under a fresh header (say, to re-address it).
    a = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    b = seal(sender.sender(), receiver.card, b"y", MessageType.NOTE, now_ms=T0)
    moved = resign_outer(sender.signing_key, b.header, a.ciphertext)
    with pytest.raises(DecryptionError):
        _open(moved, directory, receiver)


def test_ciphertext_to_another_key_of_ours_does_not_decrypt(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    _, second = receiver.add_encryption_key(not_before=T0 - HOUR)
    first = receiver.encryption[0][1]
    header = make_header(sender, receiver.card, encryption_key=first).to_bytes()
    envelope = forge_envelope(sender.signing_key, header, b"x", second)
    with pytest.raises(DecryptionError):
        _open(envelope, federation.directory(), receiver)


@pytest.mark.parametrize("ciphertext", [b"", b"\0", b"\0" * 32, b"\xff" * 200, b"\0" * 1200])
@pytest.mark.parametrize("receiver_name", ["receiver", "pq_receiver"])
def test_garbage_ciphertext_signed_by_the_sender_does_not_decrypt(
    request: pytest.FixtureRequest,
    sender: SimAgency,
    directory: Directory,
    receiver_name: str,
    ciphertext: bytes,
) -> None:
    receiver: SimAgency = request.getfixturevalue(receiver_name)
    header = make_header(sender, receiver.card).to_bytes()
    envelope = resign_outer(sender.signing_key, header, ciphertext)
    with pytest.raises(DecryptionError):
        _open(envelope, directory, receiver)


def test_suite_that_does_not_fit_the_key_does_not_decrypt(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    for target, wrong in (
        (receiver, Suite.MLKEM768X25519_SHA256_CHACHA20POLY1305),
        (pq_receiver, Suite.X25519_SHA256_CHACHA20POLY1305),
    ):
        key = target.card.current_encryption_key(T0)
        header = make_header(sender, target.card, suite=wrong).to_bytes()
        envelope = forge_envelope(sender.signing_key, header, b"x", key)
        with pytest.raises(DecryptionError):
            _open(envelope, directory, target)


# --- order of checks, as DESIGN.md lists them ------------------------------------------------
# size limits, parse, sender and key, outer signature, recipient, expiry, replay, decrypt, inner


def test_order_size_before_parse(receiver: SimAgency, directory: Directory) -> None:
    garbage = b"\xff" * 100
    with pytest.raises(MalformedError):
        _open(garbage, directory, receiver)
    with pytest.raises(OversizedError):
        _open(garbage, directory, receiver, limits=Limits(max_envelope_bytes=99))


def test_order_unknown_sender_before_outer_signature(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    envelope = _break_outer(seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0))
    del federation.agencies[sender.agency_id]
    with pytest.raises(UnknownSenderError):
        _open(envelope, federation.directory(), receiver)


def test_order_unknown_key_before_outer_signature(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = _break_outer(
        seal(sender.sender(SigningKey.generate()), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    )
    with pytest.raises(UnknownKeyError):
        _open(envelope, directory, receiver)


def test_order_key_validity_before_outer_signature(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    key, _ = sender.add_signing_key(T0 + HOUR, T0 + YEAR)
    envelope = _break_outer(
        seal(sender.sender(key), receiver.card, b"x", MessageType.NOTE, now_ms=T0)
    )
    with pytest.raises(KeyNotValidError):
        _open(envelope, federation.directory(), receiver)


def test_order_outer_signature_before_recipient_expiry_and_replay(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, ttl_ms=DAY)
    header = Header.from_bytes(envelope.header)
    broken = _break_outer(envelope)
    seen = MemorySeenIds()
    seen.add(header.sender, header.message_id)
    # Expired, replayed and for someone else: still the signature is what fails first.
    with pytest.raises(OuterSignatureError):
        _open(broken, directory, pq_receiver, now=T0 + 2 * DAY, seen=seen)
    with pytest.raises(OuterSignatureError):
        _open(broken, directory, receiver, now=T0 + 2 * DAY)


def test_order_recipient_before_expiry(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, ttl_ms=DAY)
    with pytest.raises(WrongRecipientError):
        _open(envelope, directory, pq_receiver, now=T0 + 2 * DAY)
    with pytest.raises(WrongRecipientError):
        open_envelope(
            envelope.to_bytes(),
            directory,
            Recipient(receiver.agency_id, {}),
            MemorySeenIds(),
            now_ms=T0 + 2 * DAY,
        )


def test_order_expiry_before_replay(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, ttl_ms=DAY)
    header = Header.from_bytes(envelope.header)
    seen = MemorySeenIds()
    seen.add(header.sender, header.message_id)
    with pytest.raises(ExpiredEnvelopeError):
        _open(envelope, directory, receiver, now=T0 + DAY, seen=seen)
    future = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0 + HOUR)
    fh = Header.from_bytes(future.header)
    seen.add(fh.sender, fh.message_id)
    with pytest.raises(ExpiredEnvelopeError):
        _open(future, directory, receiver, now=T0, seen=seen)


def test_order_replay_before_decryption(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card)
    envelope = resign_outer(sender.signing_key, header.to_bytes(), b"\0" * 100)
    with pytest.raises(DecryptionError):
        _open(envelope, directory, receiver)
    seen = MemorySeenIds()
    seen.add(header.sender, header.message_id)
    with pytest.raises(ReplayError):
        _open(envelope, directory, receiver, seen=seen)


def test_order_decryption_before_inner_signature(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card, case_ref="A").to_bytes()
    other = make_header(sender, receiver.card, case_ref="B").to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(
        sender.signing_key, header, b"x", key, info_header=other, inner_body=b"y"
    )
    with pytest.raises(DecryptionError):
        _open(envelope, directory, receiver)


def test_authenticate_runs_only_the_pre_decryption_checks(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    # Garbage ciphertext with a valid outer signature authenticates: nothing was decrypted.
    header = make_header(sender, receiver.card)
    envelope = resign_outer(sender.signing_key, header.to_bytes(), b"\0" * 100)
    got, got_header, card = authenticate(envelope.to_bytes(), directory)
    assert got == envelope
    assert got_header == header
    assert card == sender.card
    with pytest.raises(OuterSignatureError):
        authenticate(_break_outer(envelope).to_bytes(), directory)


# --- non-repudiation ---------------------------------------------------------------------------


def _opened(sender: SimAgency, receiver: SimAgency, directory: Directory, body: bytes) -> Opened:
    envelope = seal(sender.sender(), receiver.card, body, MessageType.NOTE, now_ms=T0)
    return _open(envelope, directory, receiver)


@pytest.mark.parametrize("receiver_name", ["receiver", "pq_receiver"])
def test_bundle_proves_sender_and_body_with_only_the_directory(
    request: pytest.FixtureRequest, sender: SimAgency, directory: Directory, receiver_name: str
) -> None:
    receiver: SimAgency = request.getfixturevalue(receiver_name)
    opened = _opened(sender, receiver, directory, b"the statement")
    statement = verify_bundle(opened.non_repudiation_bundle(), directory)
    assert statement.body == b"the statement"
    assert statement.header == opened.header
    assert statement.header.sender == sender.agency_id
    assert statement.key_revoked_later is False


def test_bundle_does_not_expire_with_the_envelope(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    envelope = seal(sender.sender(), receiver.card, b"x", MessageType.NOTE, now_ms=T0, ttl_ms=HOUR)
    bundle = _open(envelope, directory, receiver).non_repudiation_bundle()
    # verify_bundle takes no clock: a proof stays a proof.
    assert verify_bundle(bundle, directory).body == b"x"


def test_bundle_with_altered_body_is_refused(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    opened = _opened(sender, receiver, directory, b"pay 100")
    msg = envelope_pb2.NonRepudiationBundle.FromString(opened.non_repudiation_bundle())
    msg.body = b"pay 10000"
    with pytest.raises(InnerSignatureError):
        verify_bundle(msg.SerializeToString(), directory)


def test_bundle_with_altered_header_is_refused(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    opened = _opened(sender, receiver, directory, b"x")
    msg = envelope_pb2.NonRepudiationBundle.FromString(opened.non_repudiation_bundle())
    # Re-addressed to a third agency: a well-formed header, but not the one signed.
    forged = replace(Header.from_bytes(msg.header), recipient=pq_receiver.agency_id)
    msg.header = forged.to_bytes()
    with pytest.raises(InnerSignatureError):
        verify_bundle(msg.SerializeToString(), directory)
    # Any single-byte change is refused with a protocol error.
    original = opened.non_repudiation_bundle()
    for i in range(len(original)):
        tampered = bytearray(original)
        tampered[i] ^= 0x20
        with pytest.raises(MlaxError):
            verify_bundle(bytes(tampered), directory)


def test_bundle_with_an_inner_signature_from_another_member_is_refused(
    sender: SimAgency, receiver: SimAgency, pq_receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    good = forge_envelope(sender.signing_key, header, b"x", key)
    bundle = envelope_pb2.NonRepudiationBundle.FromString(
        _open(good, directory, receiver).non_repudiation_bundle()
    )
    bundle.inner_signature = pq_receiver.signing_key.sign(
        pae(CTX_ENVELOPE_INNER, header, b"x")
    ).signature
    with pytest.raises(InnerSignatureError):
        verify_bundle(bundle.SerializeToString(), directory)


def test_bundle_whose_key_was_revoked_later_is_accepted_and_flagged(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    opened = _opened(sender, receiver, federation.directory(), b"x")
    sender.revoke(sender.signing_public.key_id, T0 + 1, "laptop stolen")
    statement = verify_bundle(opened.non_repudiation_bundle(), federation.directory())
    assert statement.body == b"x"
    assert statement.key_revoked_later is True


@pytest.mark.parametrize("revoked_at", [T0, T0 - 1, T0 - DAY])
def test_bundle_whose_key_was_revoked_before_it_was_made_is_refused(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency, revoked_at: int
) -> None:
    opened = _opened(sender, receiver, federation.directory(), b"x")
    sender.revoke(sender.signing_public.key_id, revoked_at)
    with pytest.raises(RevokedKeyError):
        verify_bundle(opened.non_repudiation_bundle(), federation.directory())


def test_bundle_from_a_sender_outside_the_directory_is_refused(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    opened = _opened(sender, receiver, federation.directory(), b"x")
    del federation.agencies[sender.agency_id]
    with pytest.raises(UnknownSenderError):
        verify_bundle(opened.non_repudiation_bundle(), federation.directory())


def test_bundle_with_a_key_not_valid_at_created_at_is_refused(
    federation: FederationSimulator, sender: SimAgency, receiver: SimAgency
) -> None:
    key, _ = sender.add_signing_key(T0 + HOUR, T0 + YEAR)
    header = make_header(sender, receiver.card).to_bytes()
    bundle = envelope_pb2.NonRepudiationBundle(
        header=header,
        body=b"x",
        inner_signature=key.sign(pae(CTX_ENVELOPE_INNER, header, b"x")).signature,
    )
    # The signature is good, but the key could not have signed at created_at.
    with pytest.raises(KeyNotValidError):
        verify_bundle(bundle.SerializeToString(), federation.directory())


def test_bundle_that_is_not_protobuf_is_malformed(directory: Directory) -> None:
    with pytest.raises(MalformedError):
        verify_bundle(b"\xff\xff", directory)
    with pytest.raises(OversizedError):
        verify_bundle(b"\0" * 200, directory, Limits(max_envelope_bytes=100))


# --- limits and canonical encodings enforced when opening ------------------------------------


def test_body_over_the_receivers_limit_is_refused_when_opening(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    limits = Limits(max_body_bytes=1024)
    header = make_header(sender, receiver.card).to_bytes()
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(sender.signing_key, header, b"\0" * 2048, key)
    with pytest.raises(OversizedError):
        _open(envelope, directory, receiver, limits=limits)


def test_header_with_a_duplicated_field_is_malformed(
    sender: SimAgency, receiver: SimAgency, directory: Directory
) -> None:
    header = make_header(sender, receiver.card).to_bytes()
    # Field 4 (recipient) = "NL-POLITIE", then the real header whose recipient is DE-BKA.
    ambiguous = b"\x22\x0aNL-POLITIE" + header
    key = receiver.card.current_encryption_key(T0)
    envelope = forge_envelope(sender.signing_key, ambiguous, b"x", key)
    with pytest.raises(MalformedError):
        _open(envelope, directory, receiver)
