"""Rotation keeps traffic flowing through an overlap; revocation acts at once; warnings come."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.agency import AgencyCard, KeyAlgorithm
from exchange.encoding import now_ms
from exchange.envelope import Header, MessageType, decrypt, seal
from exchange.errors import KeystoreError, PassphraseError, RevokedKeyError
from keys.expiry import KeyStatus, expiry_warnings, key_status
from keys.identity import DAY_MS, load_identity, read_card
from keys.rotation import RotationKind, revoke_key, rotate_keys

MakeIdentity = Callable[..., tuple[Path, AgencyCard]]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


def test_rotate_all_adds_keys_and_shortens_the_old_ones_to_the_overlap(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, before = make_identity()
    t = now_ms()

    rotation = rotate_keys(directory, passphrase, RotationKind.ALL, overlap_days=30, at_ms=t)

    card = read_card(directory)
    assert rotation.card == card
    assert sorted(k.algorithm.value for k in rotation.added) == [
        "ed25519",
        "mlkem768-x25519",
        "x25519",
    ]
    assert {old.key_id for old, _ in rotation.shortened} == {
        k.key_id for k in (*before.signing_keys, *before.encryption_keys)
    }
    for _, ended in rotation.shortened:
        assert ended.not_after == t + 30 * DAY_MS
    assert len(card.signing_keys) == 2
    assert len(card.encryption_keys) == 4
    for added in rotation.added:
        assert (added.not_before, added.not_after) == (t, t + 365 * DAY_MS)
    # Both generations are usable during the overlap: traffic never stops.
    for key in (*card.signing_keys, *card.encryption_keys):
        assert key_status(card, key, t + DAY_MS) is KeyStatus.ACTIVE


def test_rotate_signing_leaves_encryption_keys_alone(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, before = make_identity()

    rotate_keys(directory, passphrase, RotationKind.SIGNING)

    card = read_card(directory)
    assert len(card.signing_keys) == 2
    assert card.encryption_keys == before.encryption_keys


def test_after_rotation_the_node_signs_with_the_new_key_only_once_it_is_published(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, published = make_identity()
    rotation = rotate_keys(directory, passphrase, RotationKind.SIGNING)
    new_id = rotation.added[0].key_id

    identity = load_identity(directory, passphrase)

    assert set(identity.signing_keys) == {published.signing_keys[0].key_id, new_id}
    assert identity.sender().key_id == new_id
    assert identity.sender(published=published).key_id == published.signing_keys[0].key_id


def test_envelopes_sealed_to_the_old_key_still_open_after_rotation(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    fr_dir, _ = make_identity("FR-OCRTEH", endpoint="node.fr.example:7443")
    gb_dir, gb_before = make_identity()
    fr = load_identity(fr_dir, passphrase)
    t = now_ms()
    envelope = seal(fr.sender(t), gb_before, b"in flight", MessageType.NOTE, now_ms=t)

    rotate_keys(gb_dir, passphrase, RotationKind.ENCRYPTION)
    gb = load_identity(gb_dir, passphrase)

    header = Header.from_bytes(envelope.header)
    key = gb.recipient().decryption_keys[header.recipient_key_id]
    assert decrypt(envelope, header, key)[0] == b"in flight"
    assert len(gb.recipient().decryption_keys) == 4


def test_rotation_with_the_wrong_passphrase_changes_nothing(make_identity: MakeIdentity) -> None:
    directory, _ = make_identity()
    before = _snapshot(directory)

    with pytest.raises(PassphraseError):
        rotate_keys(directory, b"wrong", RotationKind.ALL)

    assert _snapshot(directory) == before


def test_keys_ending_within_the_overlap_are_not_extended(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, before = make_identity(validity_days=10)

    rotation = rotate_keys(directory, passphrase, RotationKind.ALL, overlap_days=30)

    assert rotation.shortened == ()
    card = read_card(directory)
    for key in (*before.signing_keys, *before.encryption_keys):
        assert key in (*card.signing_keys, *card.encryption_keys)


def test_revoke_takes_effect_at_once_and_is_kept_in_the_card(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, before = make_identity()
    rotate_keys(directory, passphrase, RotationKind.SIGNING)
    old_id = before.signing_keys[0].key_id

    key, revocation, card = revoke_key(directory, old_id, "laptop stolen")

    assert key.key_id == old_id
    assert card == read_card(directory)
    assert card.revoked_keys == (revocation,)
    assert revocation.reason == "laptop stolen"
    assert any(k.key_id == old_id for k in card.signing_keys)  # kept, for historical proofs
    with pytest.raises(RevokedKeyError):
        card.signing_key(old_id, now_ms())
    identity = load_identity(directory, passphrase)
    assert old_id not in identity.signing_keys
    assert identity.sender().key_id != old_id
    assert key_status(card, card.signing_keys[0], now_ms()) is KeyStatus.REVOKED


def test_revoke_refuses_the_last_valid_signing_key(make_identity: MakeIdentity) -> None:
    directory, card = make_identity()
    before = _snapshot(directory)

    with pytest.raises(KeystoreError, match="is the last valid signing key of GB-NCA"):
        revoke_key(directory, card.signing_keys[0].key_id)

    assert _snapshot(directory) == before


def test_revoke_refuses_the_last_encryption_key_but_not_one_of_two(
    make_identity: MakeIdentity,
) -> None:
    directory, card = make_identity()
    x25519 = next(k for k in card.encryption_keys if k.algorithm is KeyAlgorithm.X25519)
    hybrid = next(k for k in card.encryption_keys if k.algorithm is KeyAlgorithm.MLKEM768_X25519)

    revoke_key(directory, x25519.key_id)

    with pytest.raises(KeystoreError, match="last valid encryption key"):
        revoke_key(directory, hybrid.key_id)


def test_revoke_refuses_unknown_already_revoked_and_tls_keys(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, card = make_identity()
    rotate_keys(directory, passphrase, RotationKind.SIGNING)
    old_id = card.signing_keys[0].key_id

    with pytest.raises(KeystoreError, match="has no signing or encryption key 'deadbeef'"):
        revoke_key(directory, "deadbeef")
    with pytest.raises(KeystoreError, match="has no signing or encryption key"):
        revoke_key(directory, old_id[:4])  # prefixes shorter than 8 are not accepted
    revoke_key(directory, old_id[:8])  # a unique prefix of 8 is
    with pytest.raises(KeystoreError, match="is already revoked"):
        revoke_key(directory, old_id)
    tls_id = next(f for f in (p.name for p in directory.iterdir()) if f.startswith("tls-"))
    with pytest.raises(KeystoreError, match="has no signing or encryption key"):
        revoke_key(directory, tls_id.removesuffix(".key").split("-")[-1])


def test_expiry_warnings_for_keys_without_successor_and_the_certificate(
    make_identity: MakeIdentity, passphrase: bytes
) -> None:
    directory, card = make_identity(validity_days=20)
    t = now_ms()

    warnings = expiry_warnings(card, t)

    assert len(warnings) == 4  # three keys and the TLS certificate
    assert all("expires in 19 days" in w or "expires in 20 days" in w for w in warnings)
    assert expiry_warnings(card, t, within_days=10) == []

    rotate_keys(directory, passphrase, RotationKind.ALL)

    rotated = read_card(directory)
    assert expiry_warnings(rotated, t) == [w for w in warnings if "TLS certificate" in w]
