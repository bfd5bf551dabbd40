"""Editing the federation directory before administrators sign it.

Signatures cover exact bytes, so any edit clears them. An edit of a directory that was
signed starts the next version (nodes refuse anything not newer than what they trust);
further edits before anyone signs stay on that version. Each edit re-issues the
directory now and keeps its validity span.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from exchange.agency import AgencyCard, PublicKey
from exchange.directory import AdminKey, Directory, SignedDirectory
from exchange.encoding import now_ms
from exchange.errors import InvalidFieldError
from keys.card_file import check_tls_pin

DAY_MS = 24 * 3600 * 1000
DEFAULT_DIRECTORY_VALIDITY_DAYS = 180


def new_directory(
    federation_id: str,
    threshold: int,
    admins: Sequence[AdminKey],
    *,
    validity_days: int = DEFAULT_DIRECTORY_VALIDITY_DAYS,
    at_ms: int | None = None,
) -> SignedDirectory:
    """An unsigned version 1 directory with administrators and no agencies yet."""
    if validity_days < 1:
        raise InvalidFieldError("A directory must be valid for at least one day.")
    t = now_ms() if at_ms is None else at_ms
    directory = Directory(
        federation_id=federation_id,
        version=1,
        issued_at=t,
        expires_at=t + validity_days * DAY_MS,
        threshold=threshold,
        admins=tuple(admins),
    )
    return SignedDirectory(directory.to_bytes())


@dataclass(frozen=True)
class DirectoryEdit:
    """The outcome of one edit: before and after, the new unsigned file, what changed."""

    before: Directory
    after: Directory
    signed: SignedDirectory
    cleared_signatures: int
    changes: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def _reissue(
    signed: SignedDirectory, before: Directory, edited: Directory, changes: list[str], at_ms: int
) -> DirectoryEdit:
    if not changes:
        return DirectoryEdit(before, before, signed, 0, ())
    version = before.version + 1 if signed.signatures else before.version
    after = replace(
        edited,
        version=version,
        issued_at=at_ms,
        expires_at=at_ms + (before.expires_at - before.issued_at),
    )
    return DirectoryEdit(
        before, after, SignedDirectory(after.to_bytes()), len(signed.signatures), tuple(changes)
    )


def add_agencies(
    signed: SignedDirectory, cards: Sequence[AgencyCard], *, at_ms: int | None = None
) -> DirectoryEdit:
    """Add each card, or replace the card of the same agency; identical cards change nothing."""
    ids = [c.agency_id for c in cards]
    if len(set(ids)) != len(ids):
        raise InvalidFieldError("Two of the cards are for the same agency.")
    before = Directory.from_bytes(signed.directory)
    edited = before
    changes: list[str] = []
    for card in cards:
        check_tls_pin(card, f"the card of {card.agency_id}")
        old = before.agency(card.agency_id)
        if old is None:
            changes.append(f"added {card.agency_id} ({card.name}, {card.country}, {card.endpoint})")
        else:
            changes += [f"{card.agency_id}: {c}" for c in card_changes(old, card)]
        edited = edited.with_agency(card)
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def remove_agency(
    signed: SignedDirectory, agency_id: str, *, at_ms: int | None = None
) -> DirectoryEdit:
    """Remove the agency `agency_id`; InvalidFieldError if it is not listed."""
    before = Directory.from_bytes(signed.directory)
    edited = before.without_agency(agency_id)
    changes = [f"removed {agency_id}"]
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def set_statistics_coordinators(
    signed: SignedDirectory, agency_ids: Sequence[str], *, at_ms: int | None = None
) -> DirectoryEdit:
    """Name the agencies that coordinate statistics (none: releases go to every member);
    each must be listed. The same set again changes nothing."""
    before = Directory.from_bytes(signed.directory)
    wanted = tuple(sorted(set(agency_ids)))
    edited = replace(before, statistics_coordinators=wanted)  # checks each is listed
    changes = []
    if set(wanted) != set(before.statistics_coordinators):
        changes.append(f"statistics coordinators: {', '.join(wanted) or 'none (every member)'}")
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def _key_changes(kind: str, old: Sequence[PublicKey], new: Sequence[PublicKey]) -> list[str]:
    old_by_id = {k.key_id: k for k in old}
    new_by_id = {k.key_id: k for k in new}
    out = [f"{kind} key {kid} added" for kid in sorted(new_by_id.keys() - old_by_id.keys())]
    out += [f"{kind} key {kid} removed" for kid in sorted(old_by_id.keys() - new_by_id.keys())]
    out += [
        f"{kind} key {kid} validity changed"
        for kid in sorted(old_by_id.keys() & new_by_id.keys())
        if (old_by_id[kid].not_before, old_by_id[kid].not_after)
        != (new_by_id[kid].not_before, new_by_id[kid].not_after)
    ]
    return out


def card_changes(old: AgencyCard, new: AgencyCard) -> list[str]:
    """What differs between two cards of one agency, one short phrase per difference."""
    out = [
        f"{label} {getattr(old, attr)!r} -> {getattr(new, attr)!r}"
        for label, attr in (("name", "name"), ("country", "country"), ("endpoint", "endpoint"))
        if getattr(old, attr) != getattr(new, attr)
    ]
    if old.tls_spki_sha256 != new.tls_spki_sha256:
        out.append(f"TLS key changed (new pin {new.tls_spki_sha256.hex()})")
    elif old.tls_certificate_pem != new.tls_certificate_pem:
        out.append("TLS certificate renewed (same key)")
    if old.next_tls_spki_sha256 != new.next_tls_spki_sha256:
        nxt = new.next_tls_spki_sha256
        out.append(f"next TLS pin {nxt.hex()} accepted" if nxt else "next TLS pin removed")
    out += _key_changes("signing", old.signing_keys, new.signing_keys)
    out += _key_changes("encryption", old.encryption_keys, new.encryption_keys)
    old_revoked = {r.key_id for r in old.revoked_keys}
    out += [f"key {r.key_id} revoked" for r in new.revoked_keys if r.key_id not in old_revoked]
    new_revoked = {r.key_id for r in new.revoked_keys}
    out += [
        f"revocation of key {kid} WITHDRAWN (a revoked key should stay revoked)"
        for kid in sorted(old_revoked - new_revoked)
    ]
    return out


# --- expiry and administrators -------------------------------------------------------------
#
# Verification (exchange.directory) already requires a version that changes the
# administrators or the threshold to carry the threshold of the administrators trusted
# until then as well as its own: these edits only build the version for them to sign.


def _moment(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def extend_expiry(
    signed: SignedDirectory, until_ms: int, *, at_ms: int | None = None
) -> DirectoryEdit:
    """The directory re-issued now, expiring at `until_ms`: later than now and than the
    expiry it has (InvalidFieldError otherwise)."""
    t = now_ms() if at_ms is None else at_ms
    before = Directory.from_bytes(signed.directory)
    if until_ms <= t:
        raise InvalidFieldError(
            f"{_moment(until_ms)} is in the past; a directory must expire in the future."
        )
    if until_ms <= before.expires_at:
        raise InvalidFieldError(
            f"Version {before.version} already expires {_moment(before.expires_at)}; "
            f"{_moment(until_ms)} would not extend it."
        )
    after = replace(
        before,
        version=before.version + 1 if signed.signatures else before.version,
        issued_at=t,
        expires_at=until_ms,
    )
    return DirectoryEdit(
        before,
        after,
        SignedDirectory(after.to_bytes()),
        len(signed.signatures),
        (f"expiry {_moment(before.expires_at)} -> {_moment(until_ms)}",),
    )


def add_admin(
    signed: SignedDirectory, admin: AdminKey, *, at_ms: int | None = None
) -> DirectoryEdit:
    """Add an administrator; InvalidFieldError if the key is listed already."""
    before = Directory.from_bytes(signed.directory)
    listed = before.admin(admin.key_id)
    if listed is not None:
        raise InvalidFieldError(
            f"Administrator key {admin.key_id} is already listed (as {listed.name!r})."
        )
    edited = replace(before, admins=(*before.admins, admin))
    changes = [f"administrator {admin.name!r} ({admin.key_id}) added"]
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def remove_admin(
    signed: SignedDirectory, admin_key_id: str, *, at_ms: int | None = None
) -> DirectoryEdit:
    """Remove the administrator `admin_key_id`; refused if it is not listed or if fewer
    administrators than the threshold would remain."""
    before = Directory.from_bytes(signed.directory)
    admin = before.admin(admin_key_id)
    if admin is None:
        raise InvalidFieldError(f"{admin_key_id!r} is not an administrator of this directory.")
    left = len(before.admins) - 1
    if left < before.threshold:
        raise InvalidFieldError(
            f"Removing {admin.name!r} would leave {left} administrators for a threshold of "
            f"{before.threshold}; lower the threshold first."
        )
    edited = replace(before, admins=tuple(a for a in before.admins if a.key_id != admin_key_id))
    changes = [f"administrator {admin.name!r} ({admin.key_id}) removed"]
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def set_threshold(
    signed: SignedDirectory, threshold: int, *, at_ms: int | None = None
) -> DirectoryEdit:
    """Set how many administrators must sign (1 to their number); the same value changes
    nothing."""
    before = Directory.from_bytes(signed.directory)
    edited = replace(before, threshold=threshold)  # checks 1 <= threshold <= admins
    changes = []
    if threshold != before.threshold:
        changes.append(
            f"threshold {before.threshold} -> {threshold} of {len(before.admins)} administrators"
        )
    return _reissue(signed, before, edited, changes, now_ms() if at_ms is None else at_ms)


def admin_set_changed(edit: DirectoryEdit) -> bool:
    """Whether the edit changed who administers the directory or how many must sign."""
    return (edit.before.admins, edit.before.threshold) != (
        edit.after.admins,
        edit.after.threshold,
    )
