"""Byte encodings every signature and digest in MLAX is built on.

Signatures never cover a hand-made concatenation. Every signed or hashed input is a
pre-authentication encoding (PAE) as PASETO defines it: the number of pieces, then
each piece prefixed with its length, all lengths as 64-bit little-endian unsigned
integers. The first piece is always a domain-separation context such as
`mlax/v1/envelope/outer`, so a signature made for one purpose is never valid for another.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
import uuid

# Domain-separation contexts: one per signed or hashed purpose, and every one of MLAX
# here (a test refuses an "mlax/v1/..." literal anywhere else in exchange/, node/, keys/).
# The PAE contexts, each the first piece of its PAE (docs/protocol.md 3.3 lists them all):
CTX_ENVELOPE_OUTER = b"mlax/v1/envelope/outer"
CTX_ENVELOPE_INNER = b"mlax/v1/envelope/inner"
CTX_ENVELOPE_HPKE_INFO = b"mlax/v1/envelope/hpke-info"
CTX_ENVELOPE_DIGEST = b"mlax/v1/envelope/digest"
CTX_RECEIPT = b"mlax/v1/receipt"
CTX_DIRECTORY = b"mlax/v1/directory"
CTX_KEY_ID = b"mlax/v1/key-id"
CTX_LEDGER_ENTRY = b"mlax/v1/ledger/entry"  # salted commitment of a ledger entry
CTX_CASE_TRANSITION = b"mlax/v1/case/transition"  # a case step's chain digest
CTX_CASE_APPROVAL = b"mlax/v1/case/approval"  # a supervisor's four-eyes approval
CTX_STATS_APPROVAL = b"mlax/v1/stats/approval"  # a supervisor's approval of a statistics release
CTX_ATTACHMENT_CHUNK = b"mlax/v1/attachment/chunk"  # associated data of evidence chunks
CTX_KEYFILE = b"mlax/v1/keyfile"  # associated data of a key file at rest (never sent)
CTX_BACKUP_MANIFEST = b"mlax/v1/node-backup-manifest"  # a backup manifest's seal (never sent)
CTX_WITNESS_RANK = b"mlax/v1/ledger/witness-rank"  # which members witness a log

# Domain tags that are not PAE contexts: a prefix joined to the rest by the user.
# The match-token tag names the token domain (tokens.TOKEN_DOMAIN) after the protocol's
# version: any change of the token rules moves it, so old and new tokens never meet.
TAG_MATCH_TOKEN = b"mlax/v1/match-token/2"  # joined with "|" to a match token's parts
TAG_MINHASH = b"mlax/v1/minhash/"  # + the decimal index of a MinHash coefficient pair


def _le64(n: int) -> bytes:
    return struct.pack("<Q", n)


def pae(*pieces: bytes) -> bytes:
    """PASETO pre-authentication encoding: LE64(count) || for each: LE64(len) || piece."""
    out = [_le64(len(pieces))]
    for piece in pieces:
        out.append(_le64(len(piece)))
        out.append(piece)
    return b"".join(out)


def key_id(algorithm: str, public_key: bytes) -> str:
    """The id of a public key: hex of the first 16 bytes of SHA-256(PAE(ctx, alg, key))."""
    return hashlib.sha256(pae(CTX_KEY_ID, algorithm.encode(), public_key)).digest()[:16].hex()


def now_ms() -> int:
    """Current time as unix milliseconds, the unit of every timestamp on the wire."""
    return time.time_ns() // 1_000_000


def uuid7(unix_ms: int | None = None, rand: bytes | None = None) -> bytes:
    """A 16-byte UUIDv7 (RFC 9562): 48-bit unix ms, version 7, variant 10, 74 random bits."""
    ms = now_ms() if unix_ms is None else unix_ms
    if rand is not None and len(rand) < 10:
        raise ValueError("uuid7 needs at least 10 random bytes")
    if not 0 <= ms < 2**48:
        raise ValueError("uuid7 time must fit in 48 bits")
    r = bytearray(os.urandom(10) if rand is None else rand[:10])
    value = bytearray(ms.to_bytes(6, "big")) + r
    value[6] = 0x70 | (value[6] & 0x0F)
    value[8] = 0x80 | (value[8] & 0x3F)
    return bytes(value)


def format_uuid(raw: bytes) -> str:
    """Canonical 8-4-4-4-12 text form of a 16-byte UUID."""
    return str(uuid.UUID(bytes=raw))


def parse_uuid(text: str) -> bytes:
    """The 16 bytes of a UUID given in canonical text form; raises ValueError otherwise."""
    return uuid.UUID(text).bytes


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()
