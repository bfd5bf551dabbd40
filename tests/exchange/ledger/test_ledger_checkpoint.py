"""C2SP tlog-checkpoint bodies, signed checkpoints, and tlog-cosignature/v1 cosignatures."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from exchange.ledger import (
    EMPTY_ROOT,
    Checkpoint,
    CosignatureVerifier,
    Ed25519Verifier,
    MalformedCheckpointError,
    MalformedNoteError,
    NoteSignatureError,
    UnknownOriginError,
    cosign,
    leaf_hash,
    open_checkpoint,
    sign_checkpoint,
    sign_note,
    unverified_origin,
    verify_cosignature,
    verify_note,
)

ORIGIN = "mlax.example/agency-a/ledger"
LOG_KEY = SigningKey(b"\x01" * 32)
LOG = Ed25519Verifier.for_signing_key(ORIGIN, LOG_KEY)
WITNESS_NAME = "mlax.example/agency-b/witness"
WITNESS_KEY = SigningKey(b"\x02" * 32)
WITNESS = CosignatureVerifier.for_signing_key(WITNESS_NAME, WITNESS_KEY)
ROOT = leaf_hash(b"root")
CHECKPOINT = Checkpoint(ORIGIN, 20852163, ROOT)

# The tlog-checkpoint spec's example body.
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"


def test_spec_example_body_parses_and_formats_back() -> None:
    checkpoint = Checkpoint.parse(SPEC_BODY)
    assert checkpoint.origin == "example.com/behind-the-sofa"
    assert checkpoint.size == 20852163
    assert checkpoint.root_hash == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.extensions == ()
    assert checkpoint.format() == SPEC_BODY


def test_extension_lines_round_trip() -> None:
    checkpoint = Checkpoint(ORIGIN, 3, ROOT, ("ext one", "ext two"))
    assert checkpoint.format().endswith("\next one\next two\n")
    assert Checkpoint.parse(checkpoint.format()) == checkpoint


def test_empty_tree_checkpoint() -> None:
    assert Checkpoint.parse(Checkpoint(ORIGIN, 0, EMPTY_ROOT).format()).size == 0


ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (f"{ORIGIN}\n5\n{ROOT_B64}", "end with a newline"),
        (f"{ORIGIN}\n5\n", "origin, size and root"),
        (f"\n5\n{ROOT_B64}\n", "non-empty line"),
        (f" {ORIGIN}\n5\n{ROOT_B64}\n", "whitespace"),
        (f"{ORIGIN} \n5\n{ROOT_B64}\n", "whitespace"),
        (f"{ORIGIN}\n05\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n+5\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n-5\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n1_0\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n\u0665\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n 5\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n\n{ROOT_B64}\n", "canonical decimal"),
        (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", "out of range"),
        (f"{ORIGIN}\n5\n{ROOT_B64[:-1]}\n", "not base64"),
        (f"{ORIGIN}\n5\n{base64.b64encode(ROOT[:31]).decode()}\n", "32 bytes"),
        (f"{ORIGIN}\n5\n{ROOT_B64[:-2]}F=\n", "not base64"),
        (f"{ORIGIN}\n0\n{ROOT_B64}\n", "empty tree"),
        (f"{ORIGIN}\n5\n{ROOT_B64}\n\n", "extension lines"),
        (f"{ORIGIN}\n5\n{ROOT_B64}\nok\n\nafter\n", "extension lines"),
    ],
)
def test_malformed_bodies_are_rejected(body: str, why: str) -> None:
    with pytest.raises(MalformedCheckpointError, match=why):
        Checkpoint.parse(body)


@settings(max_examples=200, deadline=None)
@given(
    origin=st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=200
    ).filter(lambda s: not any(c.isspace() for c in s)),
    size=st.integers(min_value=1, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    # within the caps a checkpoint may have (tests/node/test_split_view_bounds.py: beyond)
    extensions=st.lists(
        st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=200),
        max_size=16,
    ),
)
def test_format_then_parse_is_identity(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    assert Checkpoint.parse(checkpoint.format()) == checkpoint


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=120))
def test_random_text_raises_only_checkpoint_errors(text: str) -> None:
    try:
        checkpoint = Checkpoint.parse(text)
    except MalformedCheckpointError:
        return
    assert checkpoint.format() == text


def test_signed_checkpoint_round_trip() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, LOG_KEY)
    assert note.startswith(CHECKPOINT.format().encode() + b"\n\xe2\x80\x94 " + ORIGIN.encode())
    assert unverified_origin(note) == ORIGIN
    assert open_checkpoint(note, ORIGIN, [LOG]) == CHECKPOINT


def test_open_checkpoint_refuses_other_origins_keys_and_tampering() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, LOG_KEY)
    with pytest.raises(UnknownOriginError, match=r"not 'mlax\.example/other'"):
        open_checkpoint(note, "mlax.example/other", [LOG])
    stranger = Ed25519Verifier.for_signing_key(ORIGIN, SigningKey(b"\x03" * 32))
    with pytest.raises(NoteSignatureError, match="No known key"):
        open_checkpoint(note, ORIGIN, [stranger])
    grown = note.replace(b"\n20852163\n", b"\n20852164\n")
    with pytest.raises(NoteSignatureError, match="does not verify"):
        open_checkpoint(grown, ORIGIN, [LOG])


def test_a_signed_note_that_is_not_a_checkpoint_is_malformed() -> None:
    note = sign_note("just one line\n", ORIGIN, LOG_KEY)
    with pytest.raises(MalformedCheckpointError):
        open_checkpoint(note, ORIGIN, [LOG])


def test_cosignature_round_trip_and_format() -> None:
    line = cosign(CHECKPOINT, WITNESS_NAME, WITNESS_KEY, 1679315147)
    assert line.startswith(f"\u2014 {WITNESS_NAME} ")
    assert line.endswith("\n")
    assert verify_cosignature(CHECKPOINT, line, WITNESS) == 1679315147

    raw = base64.b64decode(line.split(" ")[-1])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == WITNESS.key_id
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    # The signed message is exactly the tlog-cosignature/v1 one.
    message = b"cosignature/v1\ntime 1679315147\n" + CHECKPOINT.format().encode()
    WITNESS_KEY.verify_key.verify(message, raw[12:])


def test_cosignature_key_ids_use_type_four() -> None:
    note_key = Ed25519Verifier.for_signing_key(WITNESS_NAME, WITNESS_KEY)
    assert WITNESS.key_id != note_key.key_id
    assert base64.b64decode(WITNESS.vkey.split("+")[2])[0] == 0x04
    assert CosignatureVerifier.from_vkey(WITNESS.vkey) == WITNESS
    with pytest.raises(MalformedNoteError, match="not a cosignature"):
        CosignatureVerifier.from_vkey(note_key.vkey)


def test_cosigned_note_verifies_with_log_and_witness_keys() -> None:
    note = sign_checkpoint(CHECKPOINT, ORIGIN, LOG_KEY)
    cosigned = note + cosign(CHECKPOINT, WITNESS_NAME, WITNESS_KEY, 1700000000).encode()
    opened = verify_note(cosigned, [LOG, WITNESS])
    assert {s.name for s in opened.verified} == {ORIGIN, WITNESS_NAME}
    # A log-only reader ignores the cosignature as an unknown signer.
    assert open_checkpoint(cosigned, ORIGIN, [LOG]) == CHECKPOINT


def test_cosignature_rejections() -> None:
    line = cosign(CHECKPOINT, WITNESS_NAME, WITNESS_KEY, 1700000000)
    other = Checkpoint(ORIGIN, CHECKPOINT.size + 1, ROOT)
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_cosignature(other, line, WITNESS)
    stranger = CosignatureVerifier.for_signing_key(WITNESS_NAME, SigningKey(b"\x04" * 32))
    with pytest.raises(NoteSignatureError, match="not by witness"):
        verify_cosignature(CHECKPOINT, line, stranger)
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[11] ^= 1  # the timestamp is signed too
    moved = line.rsplit(" ", 1)[0] + " " + base64.b64encode(bytes(raw)).decode() + "\n"
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_cosignature(CHECKPOINT, moved, WITNESS)
    with pytest.raises(MalformedNoteError):
        verify_cosignature(CHECKPOINT, "- not a line\n", WITNESS)


@pytest.mark.parametrize("timestamp", [-1, 2**63])
def test_cosignature_time_must_fit_the_spec(timestamp: int) -> None:
    with pytest.raises(MalformedNoteError, match="out of range"):
        cosign(CHECKPOINT, WITNESS_NAME, WITNESS_KEY, timestamp)
