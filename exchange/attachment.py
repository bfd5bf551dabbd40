"""Evidence attachments: an AEAD stream of fixed-size chunks, in constant memory.

A file of any size travels and rests as chunks of `chunk_size` plaintext bytes (the
last one shorter, possibly empty), each sealed with ChaCha20-Poly1305 under a key of
its own attachment. The nonce is the STREAM construction of Hoang, Reyhanitabar,
Rogaway and Vizár (as in age): an 11-byte big-endian chunk index and one byte that is
1 for the final chunk only. So a chunk cannot be moved, a stream cannot be cut short
or extended without the final flag failing, and the associated data binds every chunk
to its attachment id. The signed envelope header names the whole file's SHA-256 and
size; the key, id and chunk size travel inside the sealed body.

The same ciphertext chunks are stored by the sender, sent on the wire and stored by
the recipient, so no node re-encrypts a file; the recipient releases a download only
once every chunk opened and the plaintext digest equals the signed one.
"""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as pb
from exchange.encoding import CTX_ATTACHMENT_CHUNK, pae
from exchange.errors import InputError, InvalidFieldError
from exchange.wire import parse

if TYPE_CHECKING:
    from hashlib import _Hash

KIB = 1024
MIN_CHUNK_SIZE = 256 * KIB
MAX_CHUNK_SIZE = 1024 * KIB
DEFAULT_CHUNK_SIZE = MAX_CHUNK_SIZE
TAG_SIZE = 16
KEY_SIZE = 32
ID_SIZE = 16
# 1 TiB: far beyond any evidence file, and small enough that sizes stay exact in JSON.
MAX_ATTACHMENT_SIZE = 1 << 40
MAX_NAME_LENGTH = 255
_NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")
# C0/C1 controls, lone surrogates (undecodable file names), bidi and other format
# characters, line and paragraph separators: none belongs in a name shown to officers.
_NAME_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})


class TamperedChunkError(InputError):
    """A chunk that does not open under its attachment's key, index and final flag."""


class DigestMismatchError(InputError):
    """A complete attachment whose plaintext does not match the signed digest or size."""


def validate_name(name: str) -> str:
    """A file name safe to show and to save: no path, no control characters."""
    if not name or name in (".", ".."):
        raise InvalidFieldError("Field name: an attachment needs a file name.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidFieldError(
            f"Field name: an attachment name is at most {MAX_NAME_LENGTH} characters."
        )
    if _NAME_FORBIDDEN.search(name) or any(
        unicodedata.category(c) in _NAME_FORBIDDEN_CATEGORIES for c in name
    ):
        raise InvalidFieldError(
            "Field name: an attachment name cannot contain a path separator, control, "
            "format or line-separator characters."
        )
    return name


def chunk_count(size: int, chunk_size: int) -> int:
    """Chunks of a `size`-byte file: at least one, so an empty file still has a final chunk."""
    return max(1, -(-size // chunk_size))


@dataclass(frozen=True)
class AttachmentKey:
    """Everything needed to open and check one attachment; carried only in sealed bodies."""

    attachment_id: bytes
    key: bytes
    chunk_size: int
    size: int
    sha256: bytes
    name: str

    def __post_init__(self) -> None:
        if len(self.attachment_id) != ID_SIZE:
            raise InvalidFieldError("Field attachment_id: an attachment id is 16 bytes.")
        if len(self.key) != KEY_SIZE:
            raise InvalidFieldError("Field key: an attachment key is 32 bytes.")
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidFieldError(
                f"Field chunk_size: chunks are {MIN_CHUNK_SIZE} to {MAX_CHUNK_SIZE} bytes."
            )
        if not 0 <= self.size <= MAX_ATTACHMENT_SIZE:
            raise InvalidFieldError(
                f"Field size: attachments are at most {MAX_ATTACHMENT_SIZE} bytes."
            )
        if len(self.sha256) != 32:
            raise InvalidFieldError("Field sha256: a SHA-256 digest is 32 bytes.")
        validate_name(self.name)

    @property
    def chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    def plain_length(self, index: int) -> int:
        """Plaintext bytes in chunk `index`."""
        self._check_index(index)
        if index < self.chunks - 1:
            return self.chunk_size
        return self.size - self.chunk_size * (self.chunks - 1)

    def cipher_length(self, index: int) -> int:
        return self.plain_length(index) + TAG_SIZE

    def cipher_offset(self, index: int) -> int:
        """Where chunk `index` starts in the stored ciphertext stream."""
        self._check_index(index)
        return index * (self.chunk_size + TAG_SIZE)

    def resume_offset(self, next_index: int) -> int:
        """Where the stored stream continues once chunks before `next_index` are kept."""
        return self.cipher_size if next_index >= self.chunks else self.cipher_offset(next_index)

    @property
    def cipher_size(self) -> int:
        return self.size + self.chunks * TAG_SIZE

    def is_final(self, index: int) -> bool:
        return index == self.chunks - 1

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.chunks:
            raise InvalidFieldError(
                f"Field index: chunk {index} is outside this attachment's {self.chunks} chunks."
            )

    def digest(self) -> pb.AttachmentDigest:
        """What the signed header says of this file."""
        return pb.AttachmentDigest(name=self.name, sha256=self.sha256, size=self.size)

    def to_proto(self) -> apb.AttachmentKey:
        return apb.AttachmentKey(
            attachment_id=self.attachment_id,
            key=self.key,
            chunk_size=self.chunk_size,
            size=self.size,
            sha256=self.sha256,
            name=self.name,
        )

    def to_bytes(self) -> bytes:
        return self.to_proto().SerializeToString(deterministic=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> AttachmentKey:
        m = parse(apb.AttachmentKey, data, "attachment key", 4096)
        return cls(
            attachment_id=m.attachment_id,
            key=m.key,
            chunk_size=m.chunk_size,
            size=m.size,
            sha256=m.sha256,
            name=m.name,
        )


def new_attachment_key(
    *,
    name: str,
    size: int,
    sha256: bytes,
    attachment_id: bytes | None = None,
    key: bytes | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> AttachmentKey:
    """A fresh random key (and id unless given) for a file already hashed."""
    return AttachmentKey(
        attachment_id=os.urandom(ID_SIZE) if attachment_id is None else attachment_id,
        key=os.urandom(KEY_SIZE) if key is None else key,
        chunk_size=chunk_size,
        size=size,
        sha256=sha256,
        name=name,
    )


def chunk_nonce(index: int, final: bool) -> bytes:
    """STREAM nonce: 11-byte big-endian index, then 0x01 for the final chunk, else 0x00."""
    if not 0 <= index < 1 << 88:
        raise InvalidFieldError(f"Field index: chunk index {index} is out of range.")
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


class ChunkCipher:
    """Seals and opens the chunks of one attachment."""

    def __init__(self, attachment_id: bytes, key: bytes) -> None:
        if len(attachment_id) != ID_SIZE or len(key) != KEY_SIZE:
            raise InvalidFieldError("An attachment needs a 16-byte id and a 32-byte key.")
        self._aead = ChaCha20Poly1305(key)
        self._ad = pae(CTX_ATTACHMENT_CHUNK, attachment_id)

    @classmethod
    def of(cls, key: AttachmentKey) -> ChunkCipher:
        return cls(key.attachment_id, key.key)

    def seal(self, index: int, plaintext: bytes, *, final: bool) -> bytes:
        return self._aead.encrypt(chunk_nonce(index, final), plaintext, self._ad)

    def open(self, index: int, ciphertext: bytes, *, final: bool) -> bytes:
        """The chunk's plaintext, or TamperedChunkError: changed, moved, cut or misflagged."""
        try:
            return self._aead.decrypt(chunk_nonce(index, final), ciphertext, self._ad)
        except InvalidTag:
            raise TamperedChunkError(
                f"Chunk {index} of the attachment does not authenticate: it was altered, "
                "reordered or truncated."
            ) from None


class StreamVerifier:
    """Opens an attachment's chunks strictly in order and checks the whole file at the end.

    Memory stays at one chunk whatever the file size: only the running SHA-256 is kept.
    """

    def __init__(
        self, key: AttachmentKey, next_index: int = 0, hasher: _Hash | None = None
    ) -> None:
        self.key = key
        self.cipher = ChunkCipher.of(key)
        self.next_index = next_index
        self._hash = hasher if hasher is not None else hashlib.sha256()

    def feed(self, index: int, ciphertext: bytes) -> bytes:
        """Open chunk `index` (which must be the next one) and return its plaintext."""
        if index != self.next_index:
            raise InvalidFieldError(
                f"Field index: expected chunk {self.next_index}, got chunk {index}."
            )
        if index >= self.key.chunks:
            raise TamperedChunkError(
                f"Chunk {index} follows the final chunk: the attachment has only "
                f"{self.key.chunks} chunks."
            )
        if len(ciphertext) != self.key.cipher_length(index):
            raise TamperedChunkError(
                f"Chunk {index} is {len(ciphertext)} bytes; "
                f"{self.key.cipher_length(index)} were expected."
            )
        plain = self.cipher.open(index, ciphertext, final=self.key.is_final(index))
        self._hash.update(plain)
        self.next_index += 1
        return plain

    def feed_plain(self, index: int, plaintext: bytes) -> None:
        """Count a chunk this side sealed itself: hash its plaintext without reopening it."""
        if index != self.next_index or index >= self.key.chunks:
            raise InvalidFieldError(
                f"Field index: expected chunk {self.next_index}, got chunk {index}."
            )
        if len(plaintext) != self.key.plain_length(index):
            raise InvalidFieldError(
                f"Field data: chunk {index} must be {self.key.plain_length(index)} bytes."
            )
        self._hash.update(plaintext)
        self.next_index += 1

    def digest(self) -> bytes:
        """SHA-256 of the plaintext fed so far."""
        return self._hash.digest()

    @property
    def complete(self) -> bool:
        return self.next_index == self.key.chunks

    def finish(self) -> None:
        """Raise unless every chunk arrived and the plaintext is the file the header signed."""
        if not self.complete:
            raise DigestMismatchError(
                f"The attachment stopped after {self.next_index} of {self.key.chunks} chunks."
            )
        if self._hash.digest() != self.key.sha256:
            raise DigestMismatchError(
                "The attachment's content does not match the SHA-256 in the signed envelope."
            )
