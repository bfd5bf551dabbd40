"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 signatures.

A signed note is UTF-8 text ending in a newline, a blank line, then one or more signature
lines, each ``— <key name> <base64(key id || signature)>`` and a newline (the dash is
U+2014 EM DASH). No ASCII control character other than newline may appear anywhere.

A key id is the first four bytes of SHA-256(key name || 0x0A || signature type || public
key); Ed25519 note signatures use type 0x01 and sign the note text. A verifier key is
written ``<name>+<hex key id>+<base64(type || public key)>``.

Verification ignores signatures whose (name, key id) no verifier knows, rejects the note
if a known key's signature fails, and requires at least one known valid signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Self

from nacl.signing import SigningKey

from exchange.ledger.errors import MalformedNoteError, NoteSignatureError
from exchange.signing import ED25519_PUBLIC_KEY_SIZE, verify_ed25519

SIG_TYPE_ED25519 = 0x01
KEY_ID_SIZE = 4
ED25519_SIGNATURE_SIZE = 64
# The spec requires accepting at least 16; a bound keeps a hostile note's cost small.
DEFAULT_MAX_SIGNATURES = 100

SIGNATURE_PREFIX = "\u2014 "
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_HEX_KEY_ID = re.compile("[0-9a-f]{8}")


def b64decode_canonical(text: str) -> bytes:
    """Standard padded base64 that re-encodes to the same text; ValueError otherwise."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("not base64") from err
    # Rejecting non-canonical spellings keeps one byte string to one encoding.
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("not canonical base64")
    return raw


def key_id(name: str, sig_type: int, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || sig_type || public_key)[:4], the note key id."""
    return hashlib.sha256(name.encode() + b"\n" + bytes((sig_type,)) + public_key).digest()[
        :KEY_ID_SIZE
    ]


def check_key_name(name: str) -> None:
    """Raise MalformedNoteError unless `name` is a valid note key name."""
    if (
        not name
        or "+" in name
        or any(c.isspace() for c in name)
        or _CONTROL.search(name)
        or not _encodable(name)
    ):
        raise MalformedNoteError(
            f"Key name {name!r} must be non-empty, without spaces, '+' or control characters."
        )


def check_text(text: str) -> None:
    """Raise MalformedNoteError unless `text` can be the text of a signed note."""
    if not text.endswith("\n"):
        raise MalformedNoteError("A note text must end with a newline.")
    if _CONTROL.search(text):
        raise MalformedNoteError("A note may not contain control characters other than newline.")
    if not _encodable(text):
        raise MalformedNoteError("A note text must be valid Unicode (no lone surrogates).")


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def split_verifier_key(vkey: str) -> tuple[str, int, bytes]:
    """Parse ``name+hexid+base64(type || key)`` into (name, type, key), checking the key id."""
    parts = vkey.split("+")
    if len(parts) != 3:
        raise MalformedNoteError("A verifier key has the form name+keyid+base64key.")
    name, hex_id, encoded = parts
    check_key_name(name)
    if not _HEX_KEY_ID.fullmatch(hex_id):
        raise MalformedNoteError(f"Verifier key id {hex_id!r} is not 8 lowercase hex digits.")
    try:
        raw = b64decode_canonical(encoded)
    except ValueError as err:
        raise MalformedNoteError(f"Verifier key {name} has a key that is not base64.") from err
    if len(raw) < 2:
        raise MalformedNoteError(f"Verifier key {name} has no key material.")
    sig_type, public_key = raw[0], raw[1:]
    if key_id(name, sig_type, public_key) != bytes.fromhex(hex_id):
        raise MalformedNoteError(f"Verifier key {name} has a key id that does not match its key.")
    return name, sig_type, public_key


class NoteVerifier(Protocol):
    """A known key: it checks signature lines carrying its exact name and key id."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when `signature` (without key id) is valid over the note `text`."""
        ...


@dataclass(frozen=True)
class Ed25519Verifier:
    """A signed-note Ed25519 key (signature type 0x01).

    Subclasses change only the signature type and what the signature covers (see
    `exchange.ledger.checkpoint.CosignatureVerifier`, type 0x04).
    """

    SIG_TYPE: ClassVar[int] = SIG_TYPE_ED25519
    KIND: ClassVar[str] = "an Ed25519 note key"

    name: str
    public_key: bytes
    key_id: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.public_key) != ED25519_PUBLIC_KEY_SIZE:
            raise MalformedNoteError(f"The Ed25519 key of {self.name} is not 32 bytes.")
        object.__setattr__(self, "key_id", key_id(self.name, self.SIG_TYPE, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """Parse a ``name+hexid+base64(type || key)`` verifier key."""
        name, sig_type, public_key = split_verifier_key(vkey)
        if sig_type != cls.SIG_TYPE:
            raise MalformedNoteError(f"Verifier key {name} is not {cls.KIND}.")
        return cls(name, public_key)

    @classmethod
    def for_signing_key(cls, name: str, signing_key: SigningKey) -> Self:
        """The verifier matching `signing_key` under `name`."""
        return cls(name, bytes(signing_key.verify_key))

    @property
    def vkey(self) -> str:
        """This key as a ``name+hexid+base64(type || key)`` string."""
        encoded = base64.b64encode(bytes((self.SIG_TYPE,)) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when `signature` is this key's Ed25519 signature over the note text."""
        return verify_ed25519(self.public_key, text, signature)


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, 4-byte key id, and the signature bytes after it."""

    name: str
    key_id: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if len(self.key_id) != KEY_ID_SIZE or not self.signature:
            raise MalformedNoteError(f"The signature by {self.name} is too short.")

    def line(self) -> str:
        """The signature line, em dash first and newline last."""
        encoded = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


def parse_signature_line(line: str) -> NoteSignature:
    """Parse one ``— name base64`` line (a final newline is allowed)."""
    body = line.removesuffix("\n")
    if not body.startswith(SIGNATURE_PREFIX):
        raise MalformedNoteError("A signature line must start with an em dash and a space.")
    name, space, encoded = body[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space:
        raise MalformedNoteError("A signature line needs a key name, a space and a signature.")
    check_key_name(name)
    try:
        raw = b64decode_canonical(encoded)
    except ValueError as err:
        raise MalformedNoteError(f"The signature by {name} is not base64.") from err
    if len(raw) <= KEY_ID_SIZE:
        raise MalformedNoteError(f"The signature by {name} is too short.")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


@dataclass(frozen=True)
class Note:
    """A signed note as written: its text and its signatures, none of them checked yet."""

    text: str
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        check_text(self.text)
        if not self.signatures:
            raise MalformedNoteError("A signed note needs at least one signature.")

    def to_bytes(self) -> bytes:
        """The note as UTF-8: text, blank line, signature lines."""
        return (self.text + "\n" + "".join(s.line() for s in self.signatures)).encode()


@dataclass(frozen=True)
class VerifiedNote:
    """A note whose text a known key vouches for, with the signatures split by outcome."""

    text: str
    verified: tuple[NoteSignature, ...]
    unverified: tuple[NoteSignature, ...]


def parse_note(data: bytes, *, max_signatures: int = DEFAULT_MAX_SIGNATURES) -> Note:
    """Split a signed note into text and signature lines without checking any signature."""
    try:
        message = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise MalformedNoteError("A signed note must be UTF-8.") from err
    if _CONTROL.search(message):
        raise MalformedNoteError("A note may not contain control characters other than newline.")
    # Signature lines are never empty, so the last blank line is the separator.
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("A signed note needs a blank line before its signatures.")
    text, block = message[: split + 1], message[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedNoteError("A signed note must end with a newline after its signatures.")
    lines = block[:-1].split("\n")
    if len(lines) > max_signatures:
        raise MalformedNoteError(f"A note may carry at most {max_signatures} signatures.")
    return Note(text, tuple(parse_signature_line(line) for line in lines))


def verify_note(
    data: bytes,
    verifiers: Iterable[NoteVerifier],
    *,
    max_signatures: int = DEFAULT_MAX_SIGNATURES,
) -> VerifiedNote:
    """Parse `data` and check it against `verifiers`; raise unless a known key vouches for it."""
    note = parse_note(data, max_signatures=max_signatures)
    known: dict[tuple[str, bytes], list[NoteVerifier]] = {}
    for verifier in verifiers:
        known.setdefault((verifier.name, verifier.key_id), []).append(verifier)
    message = note.text.encode()
    verified: dict[tuple[str, bytes], NoteSignature] = {}
    unverified: list[NoteSignature] = []
    for signature in note.signatures:
        ident = (signature.name, signature.key_id)
        candidates = known.get(ident)
        if candidates is None:
            unverified.append(signature)
            continue
        # A known key that fails taints the whole note (the spec's SHOULD, taken as MUST).
        if not any(v.verify(message, signature.signature) for v in candidates):
            raise NoteSignatureError(
                f"The signature by {signature.name} ({signature.key_id.hex()}) does not verify."
            )
        verified.setdefault(ident, signature)
    if not verified:
        raise NoteSignatureError("No known key signed this note.")
    return VerifiedNote(note.text, tuple(verified.values()), tuple(unverified))


def sign_text(text: str, name: str, signing_key: SigningKey) -> NoteSignature:
    """An Ed25519 note signature by `signing_key` under `name` over `text`."""
    check_text(text)
    check_key_name(name)
    ident = key_id(name, SIG_TYPE_ED25519, bytes(signing_key.verify_key))
    return NoteSignature(name, ident, signing_key.sign(text.encode()).signature)


def sign_note(text: str, name: str, signing_key: SigningKey) -> bytes:
    """A signed note of `text` with one Ed25519 signature by `signing_key` under `name`."""
    return Note(text, (sign_text(text, name, signing_key),)).to_bytes()
