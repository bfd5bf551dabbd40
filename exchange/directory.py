"""The federation directory and its k-of-n verification, modelled on TUF root metadata.

`verify_directory` is a verify-then-trust step with no I/O: it takes the bytes a node
received and the directory it already trusts, and returns the new `Directory` or raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

from nacl.signing import SigningKey

from exchange._proto.mlax.v1 import directory_pb2 as pb
from exchange.agency import AgencyCard
from exchange.encoding import CTX_DIRECTORY, key_id, pae
from exchange.errors import (
    BadSignatureError,
    ChainGapError,
    DuplicateSignatureError,
    ExpiredDirectoryError,
    FederationMismatchError,
    InvalidFieldError,
    MlaxError,
    RollbackError,
    ThresholdError,
    UnknownSignerError,
)
from exchange.signing import verify_ed25519
from exchange.wire import parse

MAX_DIRECTORY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AdminKey:
    """A federation administrator's Ed25519 public key."""

    name: str
    public_key: bytes

    @property
    def key_id(self) -> str:
        return key_id("ed25519", self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        return verify_ed25519(self.public_key, message, signature)


@dataclass(frozen=True)
class Directory:
    """The signed content: members, administrators, threshold, version and expiry."""

    federation_id: str
    version: int
    issued_at: int
    expires_at: int
    threshold: int
    admins: tuple[AdminKey, ...]
    agencies: tuple[AgencyCard, ...] = field(default=())
    # Listed agencies that coordinate statistics (docs/statistics.md); none: every member.
    statistics_coordinators: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.federation_id:
            raise InvalidFieldError("The directory has no federation id.")
        if self.version < 1:
            raise InvalidFieldError("Directory versions start at 1.")
        if self.expires_at <= self.issued_at:
            raise InvalidFieldError("The directory expires before it was issued.")
        admin_ids = [a.key_id for a in self.admins]
        if len(set(admin_ids)) != len(admin_ids):
            raise InvalidFieldError("The directory lists an administrator key twice.")
        if any(len(a.public_key) != 32 for a in self.admins):
            raise InvalidFieldError("Administrator keys must be 32-byte Ed25519 public keys.")
        if not 1 <= self.threshold <= len(self.admins):
            raise InvalidFieldError(
                f"Threshold {self.threshold} must be between 1 and the number of "
                f"administrators ({len(self.admins)})."
            )
        agency_ids = [a.agency_id for a in self.agencies]
        if len(set(agency_ids)) != len(agency_ids):
            raise InvalidFieldError("The directory lists an agency twice.")
        pins = [pin for a in self.agencies for pin in a.tls_pins]
        if len(set(pins)) != len(pins):
            raise InvalidFieldError("Two agencies share one TLS key.")
        coordinators = self.statistics_coordinators
        if len(set(coordinators)) != len(coordinators):
            raise InvalidFieldError("The directory names a statistics coordinator twice.")
        unlisted = sorted(set(coordinators) - set(agency_ids))
        if unlisted:
            raise InvalidFieldError(
                f"Statistics coordinator {unlisted[0]} is not an agency of the directory."
            )

    @cached_property
    def _by_id(self) -> dict[str, AgencyCard]:
        return {a.agency_id: a for a in self.agencies}

    @cached_property
    def _by_pin(self) -> dict[bytes, AgencyCard]:
        # A renewal's next pin names its agency as the current one does.
        return {pin: a for a in self.agencies for pin in a.tls_pins}

    def agency(self, agency_id: str) -> AgencyCard | None:
        # Indexed: a per-message lookup must not cost in proportion to the federation.
        return self._by_id.get(agency_id)

    def agency_by_tls_pin(self, spki_sha256: bytes) -> AgencyCard | None:
        return self._by_pin.get(spki_sha256)

    def admin(self, kid: str) -> AdminKey | None:
        return next((a for a in self.admins if a.key_id == kid), None)

    def with_agency(self, card: AgencyCard) -> Directory:
        """A copy where `card` is added, or replaces the card of the same agency."""
        others = tuple(a for a in self.agencies if a.agency_id != card.agency_id)
        return replace(self, agencies=tuple(sorted((*others, card), key=lambda a: a.agency_id)))

    def without_agency(self, agency_id: str) -> Directory:
        if self.agency(agency_id) is None:
            raise InvalidFieldError(f"Agency {agency_id} is not in the directory.")
        return replace(
            self,
            agencies=tuple(a for a in self.agencies if a.agency_id != agency_id),
            statistics_coordinators=tuple(
                c for c in self.statistics_coordinators if c != agency_id
            ),
        )

    def to_wire(self) -> pb.Directory:
        return pb.Directory(
            federation_id=self.federation_id,
            version=self.version,
            issued_at=self.issued_at,
            expires_at=self.expires_at,
            threshold=self.threshold,
            admins=[
                pb.AdminKey(key_id=a.key_id, name=a.name, public_key=a.public_key)
                for a in self.admins
            ],
            agencies=[a.to_wire() for a in self.agencies],
            statistics_coordinators=list(self.statistics_coordinators),
        )

    def to_bytes(self) -> bytes:
        """The canonical bytes administrators sign (deterministic protobuf encoding)."""
        return self.to_wire().SerializeToString(deterministic=True)

    @classmethod
    def from_wire(cls, msg: pb.Directory) -> Directory:
        admins = []
        for a in msg.admins:
            admin = AdminKey(a.name, bytes(a.public_key))
            if len(admin.public_key) != 32 or admin.key_id != a.key_id:
                raise InvalidFieldError(
                    f"Administrator key id {a.key_id!r} does not match its key."
                )
            admins.append(admin)
        return cls(
            federation_id=msg.federation_id,
            version=msg.version,
            issued_at=msg.issued_at,
            expires_at=msg.expires_at,
            threshold=msg.threshold,
            admins=tuple(admins),
            agencies=tuple(AgencyCard.from_wire(a) for a in msg.agencies),
            statistics_coordinators=tuple(msg.statistics_coordinators),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Directory:
        return cls.from_wire(
            parse(pb.Directory, data, "directory", MAX_DIRECTORY_BYTES, canonical=True)
        )


@dataclass(frozen=True)
class SignedDirectory:
    """Directory bytes exactly as signed, with administrator signatures (key id, signature)."""

    directory: bytes
    signatures: tuple[tuple[str, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        return pb.SignedDirectory(
            directory=self.directory,
            signatures=[pb.DirectorySignature(key_id=k, signature=s) for k, s in self.signatures],
        ).SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedDirectory:
        msg = parse(pb.SignedDirectory, data, "signed directory", MAX_DIRECTORY_BYTES)
        return cls(
            bytes(msg.directory), tuple((s.key_id, bytes(s.signature)) for s in msg.signatures)
        )

    def signed_by(self, signing_key: SigningKey) -> SignedDirectory:
        """This directory with one more signature; re-signing by the same key replaces it."""
        kid = key_id("ed25519", bytes(signing_key.verify_key))
        sig = signing_key.sign(pae(CTX_DIRECTORY, self.directory)).signature
        others = tuple(s for s in self.signatures if s[0] != kid)
        return replace(self, signatures=(*others, (kid, sig)))


def _count_valid(
    signed: SignedDirectory, known: dict[str, AdminKey], admins: tuple[AdminKey, ...]
) -> set[str]:
    """Key ids of `admins` with a valid signature; refuses duplicates, strangers and bad ones."""
    message = pae(CTX_DIRECTORY, signed.directory)
    seen: set[str] = set()
    valid: set[str] = set()
    for kid, sig in signed.signatures:
        if kid in seen:
            raise DuplicateSignatureError(f"Administrator {kid} signed the directory twice.")
        seen.add(kid)
        admin = known.get(kid)
        if admin is None:
            raise UnknownSignerError(f"Signature by {kid}, who is not a federation administrator.")
        if not admin.verify(message, sig):
            raise BadSignatureError(f"The signature of administrator {kid} does not verify.")
        valid.add(kid)
    return valid & {a.key_id for a in admins}


def verify_directory(data: bytes, trusted: Directory | None, now_ms: int) -> Directory:
    """Verify a signed directory against the one already trusted and return it.

    Without a trusted directory (first install, pinned out of band) it must carry the
    threshold of its own administrators. With one, it must also carry the threshold of
    the trusted administrators, be of the same federation, and have a higher version.
    """
    directory = _verify_signed(data, trusted)
    if now_ms >= directory.expires_at:
        raise ExpiredDirectoryError(f"Directory version {directory.version} has expired.")
    return directory


def _verify_signed(data: bytes, trusted: Directory | None) -> Directory:
    """Every check of `verify_directory` but expiry."""
    signed = SignedDirectory.from_bytes(data)
    directory = Directory.from_bytes(signed.directory)
    if trusted is not None and directory.federation_id != trusted.federation_id:
        raise FederationMismatchError(
            f"The directory is for federation {directory.federation_id!r}, "
            f"not {trusted.federation_id!r}."
        )
    known = {a.key_id: a for a in directory.admins}
    if trusted is not None:
        known.update({a.key_id: a for a in trusted.admins})
    new_valid = _count_valid(signed, known, directory.admins)
    if len(new_valid) < directory.threshold:
        raise ThresholdError(
            f"The directory has {len(new_valid)} valid administrator signatures; "
            f"it needs {directory.threshold}."
        )
    if trusted is not None:
        old_valid = _count_valid(signed, known, trusted.admins)
        if len(old_valid) < trusted.threshold:
            raise ThresholdError(
                f"The directory has {len(old_valid)} signatures of the administrators trusted "
                f"until now; they require {trusted.threshold}."
            )
        if directory.version <= trusted.version:
            raise RollbackError(
                f"Directory version {directory.version} is not newer than the trusted "
                f"version {trusted.version}."
            )
    return directory


def verify_directory_chain(
    versions: Sequence[bytes], trusted: Directory | None, now_ms: int
) -> tuple[Directory, ...]:
    """Verify consecutive directory versions, each against the one before it; return the
    versions newer than `trusted`, oldest first (none when `trusted` is the newest).

    This is how a node that trusts an old version reaches the current one across changes
    of administrators (TUF root rotation): each version must carry the threshold of its
    own administrators and of the administrators of the version before it, and follow it
    by exactly one. Versions `trusted` already covers are skipped. Only the last version
    must be unexpired: the intermediate ones were current in their time. Without a
    trusted directory the first version of the chain is trusted on its own signatures.
    Errors name the version (or, when it does not parse, its place in the chain).
    """
    current = trusted
    out: list[Directory] = []
    for place, data in enumerate(versions, start=1):
        try:
            inner = Directory.from_bytes(SignedDirectory.from_bytes(data).directory)
        except MlaxError as e:
            raise type(e)(f"Entry {place} of the directory chain is refused: {_lower(e)}") from e
        if current is not None and inner.federation_id == current.federation_id:
            if not out and inner.version <= current.version:
                continue  # already trusted (or older): the chain may start before `trusted`
            if inner.version <= current.version:
                raise RollbackError(
                    f"Directory version {inner.version} follows version {current.version} "
                    "in the chain: versions must increase by one."
                )
            if inner.version != current.version + 1:
                raise ChainGapError(
                    f"Directory version {inner.version} follows version {current.version}: "
                    f"version {current.version + 1} is missing from the chain."
                )
        try:
            current = _verify_signed(data, current)
        except MlaxError as e:
            raise type(e)(f"Directory version {inner.version} is refused: {_lower(e)}") from e
        out.append(current)
    if out and now_ms >= out[-1].expires_at:
        raise ExpiredDirectoryError(
            f"Directory version {out[-1].version}, the last of the chain, has expired."
        )
    return tuple(out)


def _lower(e: MlaxError) -> str:
    """The error's sentence, to follow a colon."""
    message = e.message
    return message[:1].lower() + message[1:] if message[1:2].islower() else message
