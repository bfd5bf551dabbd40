"""Agency cards: the public identity of one member agency, as the directory lists it."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from exchange._proto.mlax.v1 import directory_pb2 as pb
from exchange.encoding import key_id
from exchange.errors import (
    InvalidFieldError,
    KeyNotValidError,
    RevokedKeyError,
    UnknownKeyError,
)

AGENCY_ID_RE = re.compile(r"[A-Z]{2}-[A-Z0-9][A-Z0-9-]{0,30}")
COUNTRY_RE = re.compile(r"[A-Z]{2}")


class KeyAlgorithm(Enum):
    """Algorithms of published keys; values are the wire enum numbers."""

    ED25519 = pb.KEY_ALGORITHM_ED25519
    X25519 = pb.KEY_ALGORITHM_X25519
    MLKEM768_X25519 = pb.KEY_ALGORITHM_MLKEM768_X25519

    @property
    def label(self) -> str:
        return {1: "ed25519", 2: "x25519", 3: "mlkem768-x25519"}[self.value]

    @property
    def public_key_size(self) -> int:
        return {1: 32, 2: 32, 3: 1184 + 32}[self.value]

    @property
    def signs(self) -> bool:
        return self is KeyAlgorithm.ED25519


@dataclass(frozen=True)
class PublicKey:
    """A public key with its validity window in unix milliseconds (not_after exclusive)."""

    algorithm: KeyAlgorithm
    public_key: bytes
    not_before: int
    not_after: int

    @cached_property
    def key_id(self) -> str:
        return key_id(self.algorithm.label, self.public_key)

    def valid_at(self, t_ms: int) -> bool:
        return self.not_before <= t_ms < self.not_after

    def to_wire(self) -> pb.PublicKey:
        return pb.PublicKey(
            key_id=self.key_id,
            algorithm=self.algorithm.value,
            public_key=self.public_key,
            not_before=self.not_before,
            not_after=self.not_after,
        )

    @classmethod
    def from_wire(cls, msg: pb.PublicKey) -> PublicKey:
        try:
            alg = KeyAlgorithm(msg.algorithm)
        except ValueError:
            raise InvalidFieldError(f"Key {msg.key_id!r} has an unknown algorithm.") from None
        if len(msg.public_key) != alg.public_key_size:
            raise InvalidFieldError(
                f"Key {msg.key_id!r} is {len(msg.public_key)} bytes; {alg.label} keys are "
                f"{alg.public_key_size}."
            )
        key = cls(alg, bytes(msg.public_key), msg.not_before, msg.not_after)
        if key.key_id != msg.key_id:
            raise InvalidFieldError(f"Key id {msg.key_id!r} does not match its public key.")
        if key.not_after <= key.not_before:
            raise InvalidFieldError(f"Key {msg.key_id!r} expires before it becomes valid.")
        return key


@dataclass(frozen=True)
class RevokedKey:
    key_id: str
    revoked_at: int
    reason: str = ""


@dataclass(frozen=True)
class AgencyCard:
    """One member agency: identity, node endpoint, TLS pin and keys."""

    agency_id: str
    name: str
    country: str
    endpoint: str
    tls_spki_sha256: bytes
    tls_certificate_pem: bytes
    signing_keys: tuple[PublicKey, ...]
    encryption_keys: tuple[PublicKey, ...]
    revoked_keys: tuple[RevokedKey, ...] = field(default=())
    # A TLS certificate renewal under way: the next certificate, accepted beside the current.
    next_tls_spki_sha256: bytes = b""
    next_tls_certificate_pem: bytes = b""

    def __post_init__(self) -> None:
        if not AGENCY_ID_RE.fullmatch(self.agency_id):
            raise InvalidFieldError(
                f"Agency id {self.agency_id!r} is not of the form CC-NAME "
                "(country code, dash, capitals and digits)."
            )
        if not COUNTRY_RE.fullmatch(self.country):
            raise InvalidFieldError(f"Country {self.country!r} is not an ISO 3166 alpha-2 code.")
        if not self.name or len(self.name) > 200:
            raise InvalidFieldError("Agency name must be 1 to 200 characters.")
        if len(self.tls_spki_sha256) != 32:
            raise InvalidFieldError("TLS fingerprint must be a 32-byte SHA-256.")
        if bool(self.next_tls_spki_sha256) != bool(self.next_tls_certificate_pem):
            raise InvalidFieldError("The next TLS pin and the next TLS certificate go together.")
        if self.next_tls_spki_sha256 and len(self.next_tls_spki_sha256) != 32:
            raise InvalidFieldError("The next TLS fingerprint must be a 32-byte SHA-256.")
        if self.next_tls_spki_sha256 == self.tls_spki_sha256:
            raise InvalidFieldError("The next TLS pin is the current one.")
        host, sep, port = self.endpoint.rpartition(":")
        if (
            not sep
            or not host
            or not port.isascii()
            or not port.isdigit()
            or not 0 < int(port) < 65536
        ):
            raise InvalidFieldError(f"Endpoint {self.endpoint!r} is not HOST:PORT.")
        if any(k.algorithm is not KeyAlgorithm.ED25519 for k in self.signing_keys):
            raise InvalidFieldError("Signing keys must be Ed25519.")
        if any(k.algorithm is KeyAlgorithm.ED25519 for k in self.encryption_keys):
            raise InvalidFieldError("Encryption keys must be X25519 or MLKEM768-X25519.")
        ids = [k.key_id for k in (*self.signing_keys, *self.encryption_keys)]
        if len(set(ids)) != len(ids):
            raise InvalidFieldError(f"Agency {self.agency_id} lists the same key twice.")

    @property
    def tls_pins(self) -> tuple[bytes, ...]:
        """Every TLS pin peers accept for this agency: the current, then any next one."""
        return (self.tls_spki_sha256,) + (
            (self.next_tls_spki_sha256,) * bool(self.next_tls_spki_sha256)
        )

    @property
    def tls_certificates(self) -> tuple[bytes, ...]:
        """The certificates of `tls_pins`, in the same order."""
        nxt = self.next_tls_certificate_pem
        return (self.tls_certificate_pem,) + ((nxt,) * bool(nxt))

    # -- key lookup: the checks every verifier needs, in one place --------------------------

    def revocation(self, kid: str) -> RevokedKey | None:
        return next((r for r in self.revoked_keys if r.key_id == kid), None)

    def _key(
        self, keys: Iterable[PublicKey], kid: str, at_ms: int, use: str, historical: bool
    ) -> PublicKey:
        key = next((k for k in keys if k.key_id == kid), None)
        if key is None:
            raise UnknownKeyError(
                f"Agency {self.agency_id} has no {use} key {kid!r} in the directory."
            )
        revoked = self.revocation(kid)
        # Live traffic: a revocation applies at once. Historical proof: only from its time on.
        if revoked is not None and (not historical or revoked.revoked_at <= at_ms):
            raise RevokedKeyError(
                f"The {use} key {kid} of {self.agency_id} was revoked"
                + (f" ({revoked.reason})." if revoked.reason else ".")
            )
        if not key.valid_at(at_ms):
            raise KeyNotValidError(
                f"The {use} key {kid} of {self.agency_id} is not valid at the stated time."
            )
        return key

    def signing_key(self, kid: str, at_ms: int, *, historical: bool = False) -> PublicKey:
        """The signing key `kid`, checked to be listed, unrevoked and valid at `at_ms`.

        With `historical`, a key revoked only after `at_ms` is still accepted.
        """
        return self._key(self.signing_keys, kid, at_ms, "signing", historical)

    def encryption_key(self, kid: str, at_ms: int) -> PublicKey:
        """The encryption key `kid`, checked to be listed, unrevoked and valid at `at_ms`."""
        return self._key(self.encryption_keys, kid, at_ms, "encryption", False)

    def current_encryption_key(self, at_ms: int) -> PublicKey:
        """The key to encrypt to now: hybrid post-quantum when offered, then the newest."""
        usable = [
            k
            for k in self.encryption_keys
            if k.valid_at(at_ms) and self.revocation(k.key_id) is None
        ]
        if not usable:
            raise KeyNotValidError(f"Agency {self.agency_id} has no valid encryption key now.")
        return max(
            usable,
            key=lambda k: (k.algorithm is KeyAlgorithm.MLKEM768_X25519, k.not_before),
        )

    def current_signing_key(self, at_ms: int) -> PublicKey:
        """The newest signing key valid now."""
        usable = [
            k for k in self.signing_keys if k.valid_at(at_ms) and self.revocation(k.key_id) is None
        ]
        if not usable:
            raise KeyNotValidError(f"Agency {self.agency_id} has no valid signing key now.")
        return max(usable, key=lambda k: k.not_before)

    # -- wire ------------------------------------------------------------------------------

    def to_wire(self) -> pb.AgencyCard:
        return pb.AgencyCard(
            agency_id=self.agency_id,
            name=self.name,
            country=self.country,
            endpoint=self.endpoint,
            tls_spki_sha256=self.tls_spki_sha256,
            tls_certificate_pem=self.tls_certificate_pem,
            signing_keys=[k.to_wire() for k in self.signing_keys],
            encryption_keys=[k.to_wire() for k in self.encryption_keys],
            revoked_keys=[
                pb.RevokedKey(key_id=r.key_id, revoked_at=r.revoked_at, reason=r.reason)
                for r in self.revoked_keys
            ],
            next_tls_spki_sha256=self.next_tls_spki_sha256,
            next_tls_certificate_pem=self.next_tls_certificate_pem,
        )

    @classmethod
    def from_wire(cls, msg: pb.AgencyCard) -> AgencyCard:
        return cls(
            agency_id=msg.agency_id,
            name=msg.name,
            country=msg.country,
            endpoint=msg.endpoint,
            tls_spki_sha256=bytes(msg.tls_spki_sha256),
            tls_certificate_pem=bytes(msg.tls_certificate_pem),
            signing_keys=tuple(PublicKey.from_wire(k) for k in msg.signing_keys),
            encryption_keys=tuple(PublicKey.from_wire(k) for k in msg.encryption_keys),
            revoked_keys=tuple(
                RevokedKey(r.key_id, r.revoked_at, r.reason) for r in msg.revoked_keys
            ),
            next_tls_spki_sha256=bytes(msg.next_tls_spki_sha256),
            next_tls_certificate_pem=bytes(msg.next_tls_certificate_pem),
        )
