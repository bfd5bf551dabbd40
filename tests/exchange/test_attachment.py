"""Evidence attachments: the STREAM chunk AEAD, the in-order verifier, keys and names.

Every chunk is ChaCha20-Poly1305 under the attachment's own key, with nonce
index (11 bytes, big-endian) || final flag (1 byte) and associated data
PAE("mlax/v1/attachment/chunk", attachment_id). The tests check the byte format against
an independent computation, round trips at the chunk-size boundaries, that every way of
altering, reordering, cutting, extending or re-targeting a stream is refused without
changing the verifier's state, and that the verifier's memory stays at one chunk.
"""

from __future__ import annotations

import hashlib
import json
import random
import struct
import tracemalloc
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import envelope_pb2 as epb
from exchange.attachment import (
    DEFAULT_CHUNK_SIZE,
    MAX_ATTACHMENT_SIZE,
    MAX_CHUNK_SIZE,
    MAX_NAME_LENGTH,
    MIN_CHUNK_SIZE,
    TAG_SIZE,
    AttachmentKey,
    ChunkCipher,
    DigestMismatchError,
    StreamVerifier,
    TamperedChunkError,
    chunk_count,
    chunk_nonce,
    new_attachment_key,
    validate_name,
)
from exchange.encoding import CTX_ATTACHMENT_CHUNK, pae
from exchange.errors import InvalidFieldError, MalformedError, MlaxError, OversizedError

KIB = 1024
MIB = 1024 * KIB
SMALL = MIN_CHUNK_SIZE  # 256 KiB
LARGE = MAX_CHUNK_SIZE  # 1 MiB
KEY = bytes(range(32))
AID = bytes(range(100, 116))
OTHER_AID = bytes(range(200, 216))
NAME = "bank-records-2026.pdf"
VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"


# --- helpers ---------------------------------------------------------------------------------


def content(size: int, seed: int = 0) -> bytes:
    """`size` reproducible pseudo-random bytes (a chunk is never all-equal by accident)."""
    return random.Random(seed).randbytes(size)


def key_for(
    data: bytes,
    chunk_size: int = SMALL,
    *,
    attachment_id: bytes = AID,
    key: bytes = KEY,
    size: int | None = None,
    sha256: bytes | None = None,
) -> AttachmentKey:
    return AttachmentKey(
        attachment_id=attachment_id,
        key=key,
        chunk_size=chunk_size,
        size=len(data) if size is None else size,
        sha256=hashlib.sha256(data).digest() if sha256 is None else sha256,
        name=NAME,
    )


def pieces(data: bytes, chunk_size: int) -> list[bytes]:
    """The plaintext chunks of `data`: at least one, the last possibly short or empty."""
    return [
        data[i * chunk_size : (i + 1) * chunk_size]
        for i in range(chunk_count(len(data), chunk_size))
    ]


def seal_all(key: AttachmentKey, data: bytes) -> list[bytes]:
    cipher = ChunkCipher.of(key)
    parts = pieces(data, key.chunk_size)
    return [cipher.seal(i, p, final=i == len(parts) - 1) for i, p in enumerate(parts)]


def open_all(key: AttachmentKey, chunks: Sequence[bytes]) -> bytes:
    verifier = StreamVerifier(key)
    out = b"".join(verifier.feed(i, c) for i, c in enumerate(chunks))
    verifier.finish()
    return out


def feed_until_refused(key: AttachmentKey, chunks: Sequence[bytes]) -> tuple[StreamVerifier, int]:
    """Feed `chunks` in order; return the verifier and the index of the chunk it refused.

    The refused chunk must leave the verifier as it was before that chunk.
    """
    verifier = StreamVerifier(key)
    for i, chunk in enumerate(chunks):
        before = (verifier.next_index, verifier.digest())
        try:
            verifier.feed(i, chunk)
        except TamperedChunkError:
            assert (verifier.next_index, verifier.digest()) == before
            return verifier, i
    raise AssertionError("every chunk was accepted")


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def le64(n: int) -> bytes:
    return struct.pack("<Q", n)


# --- the byte format, computed independently ---------------------------------------------------


def test_nonce_is_the_stream_construction() -> None:
    assert chunk_nonce(0, False) == bytes(12)
    assert chunk_nonce(0, True) == bytes(11) + b"\x01"
    assert chunk_nonce(1, False) == bytes(10) + b"\x01\x00"
    assert chunk_nonce(0x0102030405060708090A0B, True).hex() == "0102030405060708090a0b01"
    assert chunk_nonce((1 << 88) - 1, False) == b"\xff" * 11 + b"\x00"
    for bad in (-1, 1 << 88):
        with pytest.raises(InvalidFieldError):
            chunk_nonce(bad, False)


def test_associated_data_is_pae_of_context_and_attachment_id() -> None:
    ad = le64(2) + le64(24) + b"mlax/v1/attachment/chunk" + le64(16) + AID
    assert pae(CTX_ATTACHMENT_CHUNK, AID) == ad
    plain = content(1000)
    for index, final in ((0, False), (0, True), (7, False), (7, True)):
        nonce = index.to_bytes(11, "big") + bytes([final])
        expected = ChaCha20Poly1305(KEY).encrypt(nonce, plain, ad)
        assert ChunkCipher(AID, KEY).seal(index, plain, final=final) == expected
        assert len(expected) == len(plain) + TAG_SIZE


def test_chunk_cipher_needs_a_16_byte_id_and_a_32_byte_key() -> None:
    for aid, key in ((AID[:15], KEY), (AID + b"\x00", KEY), (AID, KEY[:31]), (AID, KEY + b"\0")):
        with pytest.raises(InvalidFieldError):
            ChunkCipher(aid, key)


# --- geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "chunk_size", "chunks"),
    [
        (0, SMALL, 1),
        (1, SMALL, 1),
        (SMALL - 1, SMALL, 1),
        (SMALL, SMALL, 1),
        (SMALL + 1, SMALL, 2),
        (3 * SMALL, SMALL, 3),
        (3 * SMALL + 1, SMALL, 4),
        (LARGE, LARGE, 1),
        (LARGE + 1, LARGE, 2),
        (MAX_ATTACHMENT_SIZE, LARGE, MAX_ATTACHMENT_SIZE // LARGE),
    ],
)
def test_chunk_count(size: int, chunk_size: int, chunks: int) -> None:
    assert chunk_count(size, chunk_size) == chunks


def test_lengths_and_offsets_of_a_key() -> None:
    key = key_for(b"", size=2 * SMALL + 5, sha256=bytes(32))
    assert key.chunks == 3
    assert [key.plain_length(i) for i in range(3)] == [SMALL, SMALL, 5]
    assert [key.cipher_length(i) for i in range(3)] == [SMALL + 16, SMALL + 16, 21]
    assert [key.cipher_offset(i) for i in range(3)] == [0, SMALL + 16, 2 * SMALL + 32]
    assert key.cipher_size == 2 * SMALL + 5 + 3 * 16
    assert key.cipher_offset(2) + key.cipher_length(2) == key.cipher_size
    assert [key.is_final(i) for i in range(3)] == [False, False, True]
    for bad in (-1, 3):
        with pytest.raises(InvalidFieldError):
            key.plain_length(bad)
        with pytest.raises(InvalidFieldError):
            key.cipher_offset(bad)


def test_an_empty_file_is_one_empty_final_chunk() -> None:
    key = key_for(b"")
    assert (key.chunks, key.plain_length(0), key.cipher_size) == (1, 0, TAG_SIZE)
    chunks = seal_all(key, b"")
    assert [len(c) for c in chunks] == [TAG_SIZE]
    assert open_all(key, chunks) == b""


# --- round trips ----------------------------------------------------------------------------


def _sizes(chunk_size: int) -> list[int]:
    return [0, 1, chunk_size - 1, chunk_size, chunk_size + 1, 3 * chunk_size + 7]


@pytest.mark.parametrize(
    ("chunk_size", "size"),
    [(c, s) for c in (SMALL, LARGE) for s in _sizes(c)],
    ids=lambda v: f"{v}",
)
def test_round_trip(chunk_size: int, size: int) -> None:
    data = content(size, seed=size)
    key = key_for(data, chunk_size)
    chunks = seal_all(key, data)
    assert len(chunks) == key.chunks
    assert [len(c) for c in chunks] == [key.cipher_length(i) for i in range(key.chunks)]
    assert sum(map(len, chunks)) == key.cipher_size
    verifier = StreamVerifier(key)
    out = [verifier.feed(i, c) for i, c in enumerate(chunks)]
    assert verifier.complete
    verifier.finish()
    assert b"".join(out) == data
    assert verifier.digest() == hashlib.sha256(data).digest() == key.sha256


def test_feed_plain_counts_chunks_this_side_sealed() -> None:
    """The uploading node hashes what it seals; the digest equals the receiver's."""
    data = content(2 * SMALL + 3)
    key = key_for(data)
    mine = StreamVerifier(key)
    for i, p in enumerate(pieces(data, SMALL)):
        mine.feed_plain(i, p)
    mine.finish()
    theirs = StreamVerifier(key)
    for i, c in enumerate(seal_all(key, data)):
        theirs.feed(i, c)
    assert mine.digest() == theirs.digest() == key.sha256
    with pytest.raises(InvalidFieldError):
        StreamVerifier(key).feed_plain(1, pieces(data, SMALL)[1])
    with pytest.raises(InvalidFieldError):
        StreamVerifier(key).feed_plain(0, b"short")


def test_a_resumed_verifier_continues_the_running_digest() -> None:
    """A transfer cut after k chunks resumes from chunk k with the digest carried over."""
    data = content(3 * SMALL + 9)
    key = key_for(data)
    chunks = seal_all(key, data)
    first = StreamVerifier(key)
    for i in range(2):
        first.feed(i, chunks[i])
    resumed = StreamVerifier(key, next_index=first.next_index, hasher=first._hash.copy())
    for i in range(2, key.chunks):
        resumed.feed(i, chunks[i])
    resumed.finish()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    size=st.one_of(
        st.sampled_from([0, 1, SMALL - 1, SMALL, SMALL + 1, 2 * SMALL, 2 * SMALL + 1]),
        st.integers(min_value=0, max_value=3 * SMALL + 100),
    ),
    seed=st.integers(min_value=0, max_value=2**32),
    head=st.binary(max_size=64),
)
def test_any_bytes_round_trip_and_the_digest_is_sha256(size: int, seed: int, head: bytes) -> None:
    data = (head + content(size, seed))[: max(size, len(head))]
    key = key_for(data)
    verifier = StreamVerifier(key)
    out = b"".join(verifier.feed(i, c) for i, c in enumerate(seal_all(key, data)))
    verifier.finish()
    assert out == data
    assert verifier.digest() == hashlib.sha256(data).digest()


# --- tampering: every change is refused and changes nothing ----------------------------------

# Three chunks of 256 KiB, 256 KiB and 100 bytes.
TAMPER_DATA = content(2 * SMALL + 100, seed=7)


@cache
def _tamper_fixture() -> tuple[AttachmentKey, tuple[bytes, ...]]:
    key = key_for(TAMPER_DATA)
    return key, tuple(seal_all(key, TAMPER_DATA))


def _bits(length: int) -> list[int]:
    """First, middle and last bits of the body, and first and last of the tag."""
    total = length * 8
    return sorted(
        {0, 7, total // 2, (length - TAG_SIZE) * 8 - 1, (length - TAG_SIZE) * 8, total - 1}
    )


@pytest.mark.parametrize(
    ("index", "bit"),
    [(i, b) for i, n in enumerate((SMALL + 16, SMALL + 16, 116)) for b in _bits(n)],
)
def test_a_flipped_bit_in_any_chunk_is_refused(index: int, bit: int) -> None:
    key, chunks = _tamper_fixture()
    tampered = list(chunks)
    tampered[index] = flip(chunks[index], bit)
    verifier, refused = feed_until_refused(key, tampered)
    assert refused == index
    # Nothing changed: the genuine chunk is accepted in its place and the file completes.
    for i in range(index, key.chunks):
        verifier.feed(i, chunks[i])
    verifier.finish()


def test_swapped_chunks_are_refused() -> None:
    key, chunks = _tamper_fixture()
    _, refused = feed_until_refused(key, [chunks[1], chunks[0], chunks[2]])
    assert refused == 0


def test_a_chunk_moved_to_another_index_is_refused() -> None:
    data = content(4 * SMALL, seed=3)
    key = key_for(data)
    chunks = seal_all(key, data)
    # Chunk 1 again in place of chunk 2 (a replay), and chunk 2 in place of chunk 1.
    _, refused = feed_until_refused(key, [chunks[0], chunks[1], chunks[1], chunks[3]])
    assert refused == 2
    _, refused = feed_until_refused(key, [chunks[0], chunks[2], chunks[1], chunks[3]])
    assert refused == 1
    cipher = ChunkCipher.of(key)
    for i in range(3):
        for j in range(3):
            if i != j:
                with pytest.raises(TamperedChunkError):
                    cipher.open(j, chunks[i], final=False)


def test_the_final_chunk_flagged_non_final_is_refused() -> None:
    key, chunks = _tamper_fixture()
    cipher = ChunkCipher.of(key)
    with pytest.raises(TamperedChunkError):
        cipher.open(2, chunks[2], final=False)
    # A sender that sealed its last chunk without the final flag: the stream never ends.
    misflagged = cipher.seal(2, TAMPER_DATA[2 * SMALL :], final=False)
    _, refused = feed_until_refused(key, [*chunks[:2], misflagged])
    assert refused == 2


def test_a_non_final_chunk_flagged_final_is_refused() -> None:
    key, chunks = _tamper_fixture()
    cipher = ChunkCipher.of(key)
    with pytest.raises(TamperedChunkError):
        cipher.open(0, chunks[0], final=True)
    misflagged = cipher.seal(1, TAMPER_DATA[SMALL : 2 * SMALL], final=True)
    _, refused = feed_until_refused(key, [chunks[0], misflagged, chunks[2]])
    assert refused == 1


@pytest.mark.parametrize("kept", [0, 1, 2])
def test_a_stream_that_stops_early_fails_at_finish(kept: int) -> None:
    key, chunks = _tamper_fixture()
    verifier = StreamVerifier(key)
    for i in range(kept):
        verifier.feed(i, chunks[i])
    assert not verifier.complete
    with pytest.raises(DigestMismatchError, match=f"after {kept} of 3 chunks"):
        verifier.finish()


def test_a_truncated_chunk_is_refused() -> None:
    key, chunks = _tamper_fixture()
    cipher = ChunkCipher.of(key)
    for cut in (chunks[0][:-1], chunks[0][:SMALL], chunks[0][:TAG_SIZE], chunks[0][:5], b""):
        _, refused = feed_until_refused(key, [cut, *chunks[1:]])
        assert refused == 0
        with pytest.raises(TamperedChunkError):
            cipher.open(0, cut, final=False)


def test_a_stream_cut_at_a_chunk_boundary_cannot_pass_as_a_shorter_file() -> None:
    """Even under a key whose size says the file ends there, a non-final chunk is refused."""
    _key, chunks = _tamper_fixture()
    shorter = key_for(TAMPER_DATA[: 2 * SMALL])
    _, refused = feed_until_refused(shorter, chunks[:2])
    assert refused == 1


def test_an_extra_chunk_is_refused() -> None:
    key, chunks = _tamper_fixture()
    verifier = StreamVerifier(key)
    for i, c in enumerate(chunks):
        verifier.feed(i, c)
    digest = verifier.digest()
    # An extra chunk after the final one: sealed as the stream's continuation.
    extra = ChunkCipher.of(key).seal(3, b"appended", final=True)
    with pytest.raises(MlaxError):
        verifier.feed(3, extra)
    assert (verifier.next_index, verifier.digest()) == (3, digest)
    verifier.finish()
    # A stream sealed with one chunk more than the key announces: the short chunk the key
    # expects last is a full one here, and the file's true last chunk is not final.
    longer = TAMPER_DATA + content(SMALL, seed=9)
    longer_chunks = seal_all(key_for(longer), longer)
    _, refused = feed_until_refused(key, longer_chunks)
    assert refused == 2


def test_an_extra_chunk_is_refused_as_tampering() -> None:
    key, chunks = _tamper_fixture()
    verifier = StreamVerifier(key)
    for i, c in enumerate(chunks):
        verifier.feed(i, c)
    with pytest.raises(TamperedChunkError):
        verifier.feed(3, ChunkCipher.of(key).seal(3, b"appended", final=True))


def test_a_chunk_out_of_order_is_refused_before_decryption() -> None:
    key, chunks = _tamper_fixture()
    verifier = StreamVerifier(key)
    with pytest.raises(InvalidFieldError, match="expected chunk 0, got chunk 1"):
        verifier.feed(1, chunks[1])
    verifier.feed(0, chunks[0])
    with pytest.raises(InvalidFieldError, match="expected chunk 1, got chunk 0"):
        verifier.feed(0, chunks[0])  # a replay of a chunk already counted
    assert verifier.next_index == 1


def test_a_chunk_of_another_attachment_under_the_same_key_is_refused() -> None:
    key, chunks = _tamper_fixture()
    foreign = seal_all(key_for(TAMPER_DATA, attachment_id=OTHER_AID), TAMPER_DATA)
    assert foreign[0] != chunks[0]
    for index in range(3):
        mixed = list(chunks)
        mixed[index] = foreign[index]
        _, refused = feed_until_refused(key, mixed)
        assert refused == index


def test_a_chunk_under_another_key_is_refused() -> None:
    key, _chunks = _tamper_fixture()
    foreign = seal_all(key_for(TAMPER_DATA, key=bytes(32)), TAMPER_DATA)
    _, refused = feed_until_refused(key, foreign)
    assert refused == 0


@pytest.mark.parametrize("delta", [-1, 1, -100, SMALL, -SMALL])
def test_a_wrong_size_is_refused(delta: int) -> None:
    """Under a key that misstates the size, the chunk where they differ is refused."""
    _key, chunks = _tamper_fixture()
    wrong = key_for(TAMPER_DATA, size=len(TAMPER_DATA) + delta)
    _, refused = feed_until_refused(wrong, chunks)
    assert refused == min(2, wrong.chunks - 1)


def test_wrong_size_messages_name_the_lengths() -> None:
    key, chunks = _tamper_fixture()
    verifier = StreamVerifier(key)
    with pytest.raises(TamperedChunkError, match=f"{SMALL + 15} bytes; {SMALL + 16} were"):
        verifier.feed(0, chunks[0][:-1])


def test_authentic_chunks_of_another_file_fail_the_digest() -> None:
    """The sender's key names a digest its chunks do not have: refused at the end."""
    wrong_digest = hashlib.sha256(b"the file the header signed").digest()
    key = key_for(TAMPER_DATA, sha256=wrong_digest)
    verifier = StreamVerifier(key)
    for i, c in enumerate(seal_all(key, TAMPER_DATA)):
        verifier.feed(i, c)
    assert verifier.complete
    with pytest.raises(DigestMismatchError, match="SHA-256"):
        verifier.finish()


def test_errors_are_refusals_of_bad_input() -> None:
    assert TamperedChunkError.status == DigestMismatchError.status == "INVALID_ARGUMENT"
    assert issubclass(TamperedChunkError, MlaxError)
    assert issubclass(DigestMismatchError, MlaxError)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "report.pdf",
        "déclaration témoin (copie 2).pdf",
        "证据.zip",
        "a",
        "x" * MAX_NAME_LENGTH,
        ".hidden",
        "...",
        "name with spaces.txt",
    ],
)
def test_good_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "x" * (MAX_NAME_LENGTH + 1),
        "dir/file.pdf",
        "../../etc/passwd",
        "/abs.pdf",
        "C:\\Windows\\file.pdf",
        "back\\slash",
        "nul\x00byte",
        "line\nbreak",
        "carriage\rreturn",
        "tab\there",
        "escape\x1b[31m",
        "delete\x7f",
        "bell\x07",
    ],
    ids=repr,
)
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidFieldError, match=r"^Field name:"):
        validate_name(name)
    with pytest.raises(InvalidFieldError):
        AttachmentKey(AID, KEY, SMALL, 0, bytes(32), name)


@pytest.mark.parametrize(
    "name",
    ["next\x85line.pdf", "csi\x9b31m.pdf", "osc\x9d0;title\x9c.pdf", "bad\udcff.pdf"],
    ids=repr,
)
def test_c1_controls_and_surrogates_in_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidFieldError):
        validate_name(name)


# --- keys -----------------------------------------------------------------------------------


def test_key_bytes_round_trip_and_header_digest() -> None:
    key = key_for(TAMPER_DATA)
    data = key.to_bytes()
    assert data == key.to_proto().SerializeToString(deterministic=True)
    assert AttachmentKey.from_bytes(data) == key
    assert key.digest() == epb.AttachmentDigest(name=NAME, sha256=key.sha256, size=key.size)


def test_new_attachment_key_is_random_unless_given() -> None:
    a = new_attachment_key(name=NAME, size=10, sha256=bytes(32))
    b = new_attachment_key(name=NAME, size=10, sha256=bytes(32))
    assert a.key != b.key
    assert a.attachment_id != b.attachment_id
    assert a.chunk_size == DEFAULT_CHUNK_SIZE == LARGE
    fixed = new_attachment_key(
        name=NAME, size=10, sha256=bytes(32), attachment_id=AID, key=KEY, chunk_size=SMALL
    )
    assert (fixed.attachment_id, fixed.key, fixed.chunk_size) == (AID, KEY, SMALL)


def _proto(**overrides: Any) -> apb.AttachmentKey:
    fields: dict[str, Any] = {
        "attachment_id": AID,
        "key": KEY,
        "chunk_size": SMALL,
        "size": 5,
        "sha256": bytes(32),
        "name": NAME,
    }
    fields.update(overrides)
    return apb.AttachmentKey(**fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("attachment_id", b""),
        ("attachment_id", AID[:15]),
        ("attachment_id", AID + b"\x00"),
        ("key", b""),
        ("key", KEY[:31]),
        ("key", KEY + b"\x00"),
        ("sha256", b""),
        ("sha256", bytes(31)),
        ("sha256", bytes(33)),
        ("chunk_size", 0),
        ("chunk_size", MIN_CHUNK_SIZE - 1),
        ("chunk_size", MAX_CHUNK_SIZE + 1),
        ("size", MAX_ATTACHMENT_SIZE + 1),
        ("name", ""),
        ("name", "a/b"),
    ],
)
def test_key_parsing_refuses_bad_fields(field: str, value: object) -> None:
    data = _proto(**{field: value}).SerializeToString(deterministic=True)
    with pytest.raises(InvalidFieldError, match=rf"^Field {field}:"):
        AttachmentKey.from_bytes(data)


def test_key_parsing_refuses_bad_encodings() -> None:
    good = _proto().SerializeToString(deterministic=True)
    with pytest.raises(MalformedError):
        AttachmentKey.from_bytes(b"\xff\xff\xff")
    with pytest.raises(MalformedError):
        AttachmentKey.from_bytes(good + b"\xf8\x07\x01")  # field 127: unknown
    with pytest.raises(OversizedError):
        AttachmentKey.from_bytes(good + _proto(name="x" * 4096).SerializeToString())


def test_limits_at_their_edges_are_accepted() -> None:
    for chunk_size in (MIN_CHUNK_SIZE, MAX_CHUNK_SIZE):
        for size in (0, MAX_ATTACHMENT_SIZE):
            assert (
                AttachmentKey.from_bytes(
                    _proto(chunk_size=chunk_size, size=size).SerializeToString()
                ).size
                == size
            )


# --- memory ---------------------------------------------------------------------------------


def test_the_verifier_keeps_no_chunk_it_has_fed() -> None:
    """64 chunks of 256 KiB (16 MiB) through one verifier: peak allocation is a few chunks."""
    n = 64
    key = key_for(b"", size=n * SMALL, sha256=bytes(32))
    cipher = ChunkCipher.of(key)
    expected = hashlib.sha256()

    def stream() -> Iterator[tuple[int, bytes]]:
        for i in range(n):
            plain = bytes([i]) * SMALL
            expected.update(plain)
            yield i, cipher.seal(i, plain, final=i == n - 1)

    verifier = StreamVerifier(key)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for index, chunk in stream():
            verifier.feed(index, chunk)
            del chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert verifier.complete
    assert verifier.digest() == expected.digest()
    # Plaintext, ciphertext and the opened copy of one chunk are alive at once: < 1 MiB.
    # Keeping every chunk would take more than 16 MiB.
    assert peak < 3 * MIB, f"peak allocation {peak / MIB:.1f} MiB"


# --- the published vector (docs/vectors/attachment.json) -----------------------------------


@cache
def vector() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / "attachment.json").read_text(encoding="utf-8"))
    return doc


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def vector_key() -> AttachmentKey:
    k = vector()["attachment_key"]
    return AttachmentKey(
        attachment_id=h(k["attachment_id"]),
        key=h(k["key"]),
        chunk_size=k["chunk_size"],
        size=k["size"],
        sha256=h(k["sha256"]),
        name=k["name"],
    )


def vector_plaintext() -> bytes:
    doc = vector()
    assert doc["plaintext_rule"] == "bytes(i % 251 for i in range(size))"
    return bytes(i % 251 for i in range(doc["attachment_key"]["size"]))


def test_vector_key_and_plaintext() -> None:
    doc, key, plain = vector(), vector_key(), vector_plaintext()
    assert key.chunk_size == 262144
    assert key.size == 262144 + 5
    assert hashlib.sha256(plain).digest() == key.sha256 == h(doc["file_sha256"])
    assert key.to_bytes() == h(doc["attachment_key_bytes"])
    assert AttachmentKey.from_bytes(h(doc["attachment_key_bytes"])) == key
    assert key.digest().SerializeToString(deterministic=True) == h(doc["header_attachment_digest"])
    assert doc["context"] == CTX_ATTACHMENT_CHUNK.decode()
    assert pae(CTX_ATTACHMENT_CHUNK, key.attachment_id) == h(doc["associated_data"])
    assert key.cipher_size == doc["cipher_size"]


def test_vector_chunks() -> None:
    doc, key, plain = vector(), vector_key(), vector_plaintext()
    ad = h(doc["associated_data"])
    aead = ChaCha20Poly1305(key.key)
    stream = hashlib.sha256()
    assert len(doc["chunks"]) == key.chunks == 2
    verifier = StreamVerifier(key)
    for c in doc["chunks"]:
        i, final = c["index"], c["final"]
        part = plain[i * key.chunk_size : (i + 1) * key.chunk_size]
        assert (len(part), c["plaintext_length"]) == (key.plain_length(i),) * 2
        assert chunk_nonce(i, final) == h(c["nonce"])
        assert final is key.is_final(i)
        sealed = aead.encrypt(h(c["nonce"]), part, ad)
        assert sealed == ChunkCipher.of(key).seal(i, part, final=final)
        assert len(sealed) == c["ciphertext_length"]
        assert key.cipher_offset(i) == c["cipher_offset"]
        assert hashlib.sha256(sealed).hexdigest() == c["ciphertext_sha256"]
        assert sealed[:32].hex() == c["ciphertext_first_32"]
        assert sealed[-TAG_SIZE:].hex() == c["tag"]
        if "ciphertext" in c:
            assert sealed.hex() == c["ciphertext"]
        stream.update(sealed)
        assert verifier.feed(i, sealed) == part
    verifier.finish()
    assert stream.hexdigest() == doc["ciphertext_stream_sha256"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["name"]) for c in vector()["negative"]])
def test_vector_refusals(case: dict[str, Any]) -> None:
    assert (case["error"], case["status"]) == ("TamperedChunkError", TamperedChunkError.status)
    cipher = ChunkCipher(h(case["attachment_id"]), vector_key().key)
    with pytest.raises(TamperedChunkError):
        cipher.open(case["index"], h(case["ciphertext"]), final=case["final"])
