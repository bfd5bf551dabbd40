"""C2SP signed notes: the spec's own example, signing, and every way a note can be wrong."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from exchange.ledger import (
    Ed25519Verifier,
    MalformedNoteError,
    NoteSignatureError,
    parse_note,
    sign_note,
    sign_text,
    verify_note,
)
from exchange.ledger.note import key_id

# From C2SP signed-note (and vectors/README.md beside this file); the dash is U+2014.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n"
    "\n"
    "\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONn"
    "cAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
).encode()
SPEC = Ed25519Verifier.from_vkey(SPEC_VKEY)


def _key(seed: int) -> SigningKey:
    return SigningKey(bytes([seed]) * 32)


def test_spec_example_verifies() -> None:
    note = verify_note(SPEC_NOTE, [SPEC])
    assert note.text == "This is an example message.\n"
    assert [s.name for s in note.verified] == ["example.com/foo"]
    assert note.unverified == ()


def test_spec_verifier_key_round_trips_and_its_id_is_the_spec_formula() -> None:
    assert SPEC.vkey == SPEC_VKEY
    assert SPEC.key_id.hex() == "530d903a"
    assert key_id("example.com/foo", 0x01, SPEC.public_key) == bytes.fromhex("530d903a")


def test_altered_text_fails() -> None:
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_note(SPEC_NOTE.replace(b"example message", b"exemple message"), [SPEC])


def test_altered_signature_fails() -> None:
    sig = SPEC_NOTE.split(b" ")[-1]
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    tampered = SPEC_NOTE.replace(sig, base64.b64encode(bytes(raw)) + b"\n")
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_note(tampered, [SPEC])


def test_unknown_signers_are_ignored_but_one_known_signature_is_required() -> None:
    extra = sign_text("This is an example message.\n", "other.example/bar", _key(7))
    both = SPEC_NOTE + extra.line().encode()
    note = verify_note(both, [SPEC])
    assert [s.name for s in note.unverified] == ["other.example/bar"]
    with pytest.raises(NoteSignatureError, match="No known key"):
        verify_note(both, [Ed25519Verifier.for_signing_key("third.example", _key(8))])


def test_same_name_other_key_is_an_unknown_signer() -> None:
    # Per spec a signature matching a known name but not its key id is ignored.
    impostor = sign_note("This is an example message.\n", "example.com/foo", _key(9))
    with pytest.raises(NoteSignatureError, match="No known key"):
        verify_note(impostor, [SPEC])


def test_a_bad_signature_from_a_known_key_taints_the_note() -> None:
    text = "hello\n"
    good = sign_text(text, "log.example", _key(1))
    forged = sign_text(text, "log.example", _key(1)).line().encode().replace(b"\n", b"")
    # Flip the last signature byte but keep name and key id: a known key failing.
    raw = bytearray(base64.b64decode(forged.split(b" ")[-1]))
    raw[-1] ^= 0x80
    bad_line = b"\xe2\x80\x94 log.example " + base64.b64encode(bytes(raw)) + b"\n"
    note = (text + "\n" + good.line()).encode() + bad_line
    with pytest.raises(NoteSignatureError, match="does not verify"):
        verify_note(note, [Ed25519Verifier.for_signing_key("log.example", _key(1))])


def test_sign_and_verify_round_trip_with_several_signers() -> None:
    text = "line one\n\nline three after an empty line\n"
    first = sign_note(text, "a.example/log", _key(1))
    second = sign_text(text, "b.example/log", _key(2)).line().encode()
    verifiers = [
        Ed25519Verifier.for_signing_key("a.example/log", _key(1)),
        Ed25519Verifier.for_signing_key("b.example/log", _key(2)),
    ]
    note = verify_note(first + second, verifiers)
    assert note.text == text
    assert {s.name for s in note.verified} == {"a.example/log", "b.example/log"}
    assert parse_note(first + second).to_bytes() == first + second
    assert Ed25519Verifier.from_vkey(verifiers[0].vkey) == verifiers[0]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("no final newline", "log.example"),
        ("tab\there\n", "log.example"),
        ("fine\n", ""),
        ("fine\n", "with space"),
        ("fine\n", "with+plus"),
        ("fine\n", "nbsp\u00a0name"),
        ("lone \ud800 surrogate\n", "log.example"),
    ],
)
def test_signing_rejects_invalid_text_or_name(text: str, name: str) -> None:
    with pytest.raises(MalformedNoteError):
        sign_note(text, name, _key(1))


GOOD_LINE = SPEC_NOTE.split(b"\n\n")[1]


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "blank line"),
        (b"text only\n", "blank line"),
        (b"text\n\n", "end with a newline"),
        (b"text\n\n" + GOOD_LINE.rstrip(b"\n"), "end with a newline"),
        (b"text\n\n- example.com/foo AAAAAAA=\n", "em dash"),
        (b"text\n\n\xe2\x80\x94 example.com/foo\n", "key name, a space"),
        (b"text\n\n\xe2\x80\x94  AAAAAAA=\n", "Key name"),
        (b"text\n\n\xe2\x80\x94 a+b AAAAAAA=\n", "Key name"),
        (b"text\n\n\xe2\x80\x94 a not!base64\n", "not base64"),
        (b"text\n\n\xe2\x80\x94 a AAAAAA==\n", "too short"),
        (b"text\n\n\xe2\x80\x94 a AAAAAAB=\n", "not base64"),
        (b"text\n\n\xe2\x80\x94 a AAAAAAA=\n\n", "end with a newline"),
        (b"te\rxt\n\n" + GOOD_LINE, "control"),
        (b"\xff\xfe\n\n" + GOOD_LINE, "UTF-8"),
        (b"text\n\n" + GOOD_LINE * 101, "at most"),
    ],
)
def test_malformed_notes_are_rejected(data: bytes, why: str) -> None:
    with pytest.raises(MalformedNoteError, match=why):
        verify_note(data, [SPEC])


def test_sixteen_signatures_are_accepted() -> None:
    text = "many signers\n"
    lines = [sign_text(text, f"w{i}.example", _key(i + 1)).line() for i in range(16)]
    note = verify_note((text + "\n" + "".join(lines)).encode(), [SPEC, _verifier(3)])
    assert len(note.verified) == 1
    assert len(note.unverified) == 15


def _verifier(i: int) -> Ed25519Verifier:
    return Ed25519Verifier.for_signing_key(f"w{i - 1}.example", _key(i))


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo+530d903a",
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/bar+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
        "example.com/foo+530d903a+",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
)
def test_malformed_verifier_keys_are_rejected(vkey: str) -> None:
    with pytest.raises(MalformedNoteError):
        Ed25519Verifier.from_vkey(vkey)


def test_a_cosignature_key_is_not_a_note_key() -> None:
    public = SPEC.public_key
    ident = key_id("w.example", 0x04, public).hex()
    vkey = f"w.example+{ident}+" + base64.b64encode(b"\x04" + public).decode()
    with pytest.raises(MalformedNoteError, match="not an Ed25519 note key"):
        Ed25519Verifier.from_vkey(vkey)


# --- fuzz: garbage only ever raises the note's own errors ---------------------------------

NOTE_ALPHABET = st.sampled_from(
    ["\n", "\n\n", "\u2014 ", "\u2014", " ", "+", "=", "A", "Uw2Q", "example.com/foo", "\r", "é"]
)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_raise_only_note_errors(data: bytes) -> None:
    with pytest.raises((MalformedNoteError, NoteSignatureError)):
        verify_note(data, [SPEC])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(NOTE_ALPHABET, max_size=40), text=st.text(max_size=60))
def test_note_shaped_text_raises_only_note_errors(parts: list[str], text: str) -> None:
    data = (text + "".join(parts)).encode("utf-8", "surrogatepass")
    with pytest.raises((MalformedNoteError, NoteSignatureError)):
        verify_note(data, [SPEC])


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=80).map(lambda s: s + "\n"))
def test_any_valid_text_round_trips(text: str) -> None:
    try:
        note = sign_note(text, "fuzz.example", _key(5))
    except MalformedNoteError:
        return
    opened = verify_note(note, [Ed25519Verifier.for_signing_key("fuzz.example", _key(5))])
    assert opened.text == text
