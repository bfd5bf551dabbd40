"""C2SP tlog-checkpoint bodies and C2SP tlog-cosignature/v1 witness cosignatures.

A checkpoint body (https://c2sp.org/tlog-checkpoint) is newline-terminated lines:

    <origin>
    <tree size, ASCII decimal, no leading zeros>
    <base64 of the 32-byte RFC 6962 root hash>
    [<extension line>...]

and travels as a signed note (see `note`), signed by the log's key. MLAX caps what a
checkpoint may be (`MAX_CHECKPOINT_BYTES`, `MAX_EXTENSION_LINES`, `MAX_EXTENSION_LINE_BYTES`,
`MAX_CHECKPOINT_NOTE_BYTES`), far above what a log writes, so a hostile note stays small.

A cosignature (https://c2sp.org/tlog-cosignature, Ed25519 variant) is a note signature by
a witness whose key id uses signature type 0x04 and whose bytes are
``key id (4) || timestamp (8, big-endian uint64 POSIX seconds) || Ed25519 signature (64)``,
signed over ``cosignature/v1\\ntime <timestamp>\\n`` followed by the checkpoint body.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from nacl.signing import SigningKey

from exchange.ledger.errors import (
    MalformedCheckpointError,
    MalformedNoteError,
    NoteSignatureError,
    UnknownOriginError,
)
from exchange.ledger.merkle import EMPTY_ROOT, HASH_SIZE
from exchange.ledger.note import (
    ED25519_SIGNATURE_SIZE,
    Ed25519Verifier,
    NoteSignature,
    NoteVerifier,
    b64decode_canonical,
    check_key_name,
    key_id,
    parse_note,
    parse_signature_line,
    sign_note,
    verify_note,
)
from exchange.signing import verify_ed25519

SIG_TYPE_COSIGNATURE = 0x04
COSIGNATURE_HEADER = b"cosignature/v1\n"
TIMESTAMP_SIZE = 8
MAX_TIMESTAMP = 2**63 - 1
MAX_TREE_SIZE = 2**64 - 1

# Bounds on what a log may put in a checkpoint, so that a note a peer sends (and a witness
# may keep as split-view evidence) stays small. An MLAX body is about 100 bytes with no
# extension line (node/storage/ledger.py) and a note with 37 cosignatures a few KiB.
MAX_CHECKPOINT_BYTES = 16 * 1024  # the body: origin, size, root hash and extension lines
MAX_EXTENSION_LINES = 16
MAX_EXTENSION_LINE_BYTES = 1024
# The signed note: a body at its cap plus up to note.DEFAULT_MAX_SIGNATURES signature lines.
MAX_CHECKPOINT_NOTE_BYTES = 64 * 1024

_SIZE = re.compile("0|[1-9][0-9]*")
_CONTROL = re.compile("[\x00-\x1f]")


@dataclass(frozen=True)
class Checkpoint:
    """A log's signed statement of its tree: origin, size and root hash (plus extensions).

    The origin must be non-empty without whitespace or control characters: stricter than
    the spec's MUST (non-empty) and as strict as its SHOULD, since MLAX origins are key names.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or _CONTROL.search(self.origin):
            raise MalformedCheckpointError("A checkpoint origin must be a non-empty line.")
        if any(c.isspace() for c in self.origin):
            raise MalformedCheckpointError(f"Checkpoint origin {self.origin!r} has whitespace.")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpointError(f"Tree size {self.size} is out of range.")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpointError("A checkpoint root hash must be 32 bytes.")
        if self.size == 0 and self.root_hash != EMPTY_ROOT:
            raise MalformedCheckpointError("An empty tree's root must be SHA-256 of nothing.")
        if len(self.extensions) > MAX_EXTENSION_LINES:
            raise MalformedCheckpointError(
                f"A checkpoint may carry at most {MAX_EXTENSION_LINES} extension lines."
            )
        for line in self.extensions:
            if not line or _CONTROL.search(line):
                raise MalformedCheckpointError("Checkpoint extension lines must be non-empty.")
            if len(line.encode()) > MAX_EXTENSION_LINE_BYTES:
                raise MalformedCheckpointError(
                    f"A checkpoint extension line may be at most {MAX_EXTENSION_LINE_BYTES} bytes."
                )
        if len(self.format().encode()) > MAX_CHECKPOINT_BYTES:
            raise MalformedCheckpointError(
                f"A checkpoint body may be at most {MAX_CHECKPOINT_BYTES} bytes."
            )

    def format(self) -> str:
        """The checkpoint body: the note text a log signs."""
        root = base64.b64encode(self.root_hash).decode()
        lines = [self.origin, str(self.size), root, *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """Parse a checkpoint body strictly; raise MalformedCheckpointError on any deviation."""
        # Before any splitting: a hostile body can be megabytes (the fields are checked
        # against their own caps when the Checkpoint is built).
        if len(text) > MAX_CHECKPOINT_BYTES or len(text.encode()) > MAX_CHECKPOINT_BYTES:
            raise MalformedCheckpointError(
                f"A checkpoint body may be at most {MAX_CHECKPOINT_BYTES} bytes."
            )
        if not text.endswith("\n"):
            raise MalformedCheckpointError("A checkpoint body must end with a newline.")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedCheckpointError("A checkpoint needs origin, size and root hash lines.")
        origin, size_line, root_line, *extensions = lines
        # re.fullmatch with an explicit ASCII class: int() would accept "+1", "1_0", "١".
        if not _SIZE.fullmatch(size_line) or not size_line.isascii():
            raise MalformedCheckpointError(f"Tree size {size_line!r} is not canonical decimal.")
        try:
            root = b64decode_canonical(root_line)
        except ValueError as err:
            raise MalformedCheckpointError("The checkpoint root hash is not base64.") from err
        return cls(origin, int(size_line), root, tuple(extensions))


def unverified_origin(note: bytes) -> str:
    """The origin line of a signed checkpoint, before any check: only to pick the keys."""
    _check_note_size(note)
    origin = parse_note(note).text.partition("\n")[0]
    if not origin:
        raise MalformedCheckpointError("The note does not start with a checkpoint origin.")
    return origin


def _check_note_size(note: bytes) -> None:
    if len(note) > MAX_CHECKPOINT_NOTE_BYTES:
        raise MalformedCheckpointError(
            f"A signed checkpoint may be at most {MAX_CHECKPOINT_NOTE_BYTES} bytes."
        )


def sign_checkpoint(checkpoint: Checkpoint, name: str, signing_key: SigningKey) -> bytes:
    """The checkpoint as a signed note with the log's Ed25519 signature under `name`."""
    return sign_note(checkpoint.format(), name, signing_key)


def open_checkpoint(note: bytes, origin: str, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    """Verify a signed checkpoint against the log's keys and return it; raise otherwise."""
    _check_note_size(note)
    verified = verify_note(note, verifiers)
    checkpoint = Checkpoint.parse(verified.text)
    if checkpoint.origin != origin:
        raise UnknownOriginError(
            f"The checkpoint is for log {checkpoint.origin!r}, not {origin!r}."
        )
    return checkpoint


# --- cosignatures --------------------------------------------------------------------------


def cosignature_message(body: bytes, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 signs: the header, the time line, the checkpoint body."""
    return COSIGNATURE_HEADER + b"time %d\n" % timestamp + body


@dataclass(frozen=True)
class CosignatureVerifier(Ed25519Verifier):
    """A witness's Ed25519 cosigning key (signature type 0x04)."""

    SIG_TYPE: ClassVar[int] = SIG_TYPE_COSIGNATURE
    KIND: ClassVar[str] = "a cosignature/v1 key"

    def verify(self, text: bytes, signature: bytes) -> bool:
        """True when `signature` is ``timestamp || sig`` by this witness over note `text`."""
        if len(signature) != TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE:
            return False
        timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
        if timestamp > MAX_TIMESTAMP:
            return False
        message = cosignature_message(text, timestamp)
        return verify_ed25519(self.public_key, message, signature[TIMESTAMP_SIZE:])


def cosign(
    checkpoint: Checkpoint, witness_name: str, signing_key: SigningKey, timestamp: int
) -> str:
    """A witness's cosignature/v1 signature line over `checkpoint` at POSIX `timestamp`."""
    if isinstance(timestamp, bool) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise MalformedNoteError(f"Cosignature time {timestamp} is out of range.")
    check_key_name(witness_name)
    message = cosignature_message(checkpoint.format().encode(), timestamp)
    signature = signing_key.sign(message).signature
    ident = key_id(witness_name, SIG_TYPE_COSIGNATURE, bytes(signing_key.verify_key))
    stamp = timestamp.to_bytes(TIMESTAMP_SIZE, "big")
    return NoteSignature(witness_name, ident, stamp + signature).line()


def verify_cosignature(
    checkpoint: Checkpoint, signature_line: str, verifier: CosignatureVerifier
) -> int:
    """Check a witness's cosignature line over `checkpoint`; returns its timestamp."""
    signature = parse_signature_line(signature_line)
    if (signature.name, signature.key_id) != (verifier.name, verifier.key_id):
        raise NoteSignatureError(f"The cosignature is not by witness {verifier.name}.")
    if not verifier.verify(checkpoint.format().encode(), signature.signature):
        raise NoteSignatureError(f"The cosignature by witness {verifier.name} does not verify.")
    return int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")
