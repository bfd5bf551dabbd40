"""Offline audit of a ledger export: a clean ledger verifies, each tampering is located."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import replace
from unittest import mock

import pytest
from factories import DAY, FederationSimulator
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from simulator import (
    FEDERATION_ID,
    LOG_AGENCY,
    WITNESS_AGENCIES,
    LedgerSimulator,
    build_federation,
)

from exchange._proto.mlax.v1 import ledger_pb2 as lpb
from exchange.directory import Directory
from exchange.ledger import audit as audit_module
from exchange.ledger.audit import (
    CHECKPOINT_ORDER,
    CHECKPOINT_ROOT,
    CHECKPOINT_SIGNATURE,
    COSIGNATURE,
    DIRECTORY,
    HEADER,
    INSERTED,
    MISSING,
    MODIFIED,
    REORDERED,
    TRUNCATED,
    UNSIGNED,
    AuditReport,
    Problem,
    verify_export,
)
from exchange.ledger.audit_errors import MalformedExportError
from exchange.ledger.export import encode_record, encode_varint, iter_records
from exchange.ledger.merkle import leaf_hash
from exchange.ledger.names import log_origin, log_verifiers, witness_name, witness_verifiers
from exchange.ledger_entry import commitment

ENTRIES = 50
EVERY = 8  # checkpoints at 8, 16, ..., 48 and 50: seven

FEDERATION = build_federation()


@pytest.fixture
def ledger() -> LedgerSimulator:
    return LedgerSimulator(FEDERATION).grow(ENTRIES, every=EVERY)


def verify_file(data: bytes, trusted: Directory | None = None) -> AuditReport:
    """Verify an export file as `mlax audit verify FILE` reads it, and require the same
    outcome (report, or error and its message) from its records read one at a time.

    From a file the verifier takes runs of entry records at once, and a run of this
    many: these ledgers are small, and the first run (it holds entry 0) is read one entry
    at a time."""
    outcomes: list[AuditReport | str] = []
    for run in (3, None):
        records = iter_records(io.BytesIO(data).read)
        try:
            with mock.patch.object(audit_module, "RUN", run or audit_module.RUN):
                outcomes.append(
                    verify_export(
                        records if run else (record for record in records),
                        trusted_directory=trusted,
                    )
                )
        except MalformedExportError as err:
            outcomes.append(f"MalformedExportError: {err}")
    assert outcomes[0] == outcomes[1]
    if isinstance(outcomes[0], str):
        raise MalformedExportError(outcomes[0].partition(": ")[2])
    return outcomes[0]


def audit(ledger: LedgerSimulator, trusted: Directory | None = None) -> AuditReport:
    return verify_file(ledger.export_bytes(), trusted)


def only_problem(report: AuditReport) -> Problem:
    assert not report.ok
    assert len(report.problems) == 1, report.problems
    return report.problems[0]


# --- names ---------------------------------------------------------------------------------


def test_names_follow_the_federation_convention() -> None:
    assert log_origin("call-to-action", "GB-NCA") == "mlax.call-to-action/GB-NCA"
    assert witness_name("call-to-action", "GB-NCA") == "mlax.call-to-action/GB-NCA/witness"


def test_log_and_witness_keys_come_from_the_directory() -> None:
    directory = FEDERATION.directory()
    log_keys = log_verifiers(directory, LOG_AGENCY)
    assert [v.name for v in log_keys] == [f"mlax.{FEDERATION_ID}/{LOG_AGENCY}"]
    assert log_keys[0].public_key == FEDERATION.agencies[LOG_AGENCY].signing_public.public_key
    assert log_verifiers(directory, "XX-NOBODY") == []
    witnesses = witness_verifiers(directory, exclude_agency=LOG_AGENCY)
    assert sorted(witnesses) == sorted(WITNESS_AGENCIES)
    assert witnesses["DE-BKA"][0].name == f"mlax.{FEDERATION_ID}/DE-BKA/witness"


# --- a clean ledger ------------------------------------------------------------------------


def test_a_clean_export_verifies(ledger: LedgerSimulator) -> None:
    report = audit(ledger)
    assert report.ok, report.problems
    assert report.origin == f"mlax.{FEDERATION_ID}/{LOG_AGENCY}"
    assert report.entries == ENTRIES
    assert report.redacted == 0
    assert report.checkpoints == 7
    assert report.latest_checkpoint_size == ENTRIES
    assert report.cosigned_by == dict.fromkeys(sorted(WITNESS_AGENCIES), 7)
    assert report.directory_admins == [a.public.key_id for a in FEDERATION.admins]
    # No trusted directory given: the auditor is told to compare the admins out of band.
    assert report.warnings == [
        "the export's directory was checked against itself only: compare its administrator "
        "key ids with ones you trust"
    ]


def test_a_clean_export_verifies_against_the_trusted_directory(ledger: LedgerSimulator) -> None:
    report = audit(ledger, trusted=FEDERATION.directory())
    assert report.ok, report.problems
    assert report.warnings == []


def test_an_expired_directory_does_not_fail_a_historic_export() -> None:
    federation = build_federation()
    federation.issued_at, federation.expires_at = 1_000_000, 1_000_000 + DAY
    report = audit(LedgerSimulator(federation).grow(10, every=5))
    assert report.ok, report.problems


def test_a_newer_directory_signed_by_the_trusted_admins_is_accepted() -> None:
    federation = build_federation()
    trusted = federation.directory()
    federation.version = 2
    report = audit(LedgerSimulator(federation).grow(10, every=5), trusted=trusted)
    assert report.ok, report.problems


def test_redacted_entries_still_verify(ledger: LedgerSimulator) -> None:
    for index in (0, 7, 8, 49):
        ledger.redact(index)
    report = audit(ledger)
    assert report.ok, report.problems
    assert report.redacted == 4


def test_an_empty_ledger_verifies() -> None:
    report = audit(LedgerSimulator(FEDERATION))
    assert report.ok
    assert (report.entries, report.checkpoints, report.latest_checkpoint_size) == (0, 0, 0)


def test_entries_after_the_latest_checkpoint_are_flagged(ledger: LedgerSimulator) -> None:
    ledger.append(3)
    report = audit(ledger)
    assert report.ok, report.problems
    assert "entries 50 to 52 are not covered by a signed checkpoint yet" in report.warnings


def test_entries_without_any_checkpoint_fail() -> None:
    ledger = LedgerSimulator(FEDERATION)
    ledger.append(5)
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.detail) == (UNSIGNED, "no checkpoint signs any of the 5 entries")


def test_progress_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_module, "PROGRESS_EVERY", 16)
    calls: list[tuple[int, int]] = []
    ledger = LedgerSimulator(FEDERATION).grow(40, every=20)
    report = verify_export(
        ledger.export(), trusted_directory=None, progress=lambda d, t: calls.append((d, t))
    )
    assert report.ok
    assert calls == [(16, 40), (32, 40), (40, 40)]


# --- tampered entries ----------------------------------------------------------------------


def expect(report: AuditReport, index: int, kind: str, detail: str | None = None) -> None:
    problem = only_problem(report)
    assert (problem.index, problem.kind) == (index, kind), problem
    if detail is not None:
        assert problem.detail == detail


def test_changed_content_is_modified(ledger: LedgerSimulator) -> None:
    ledger.modify(41)
    expect(
        audit(ledger),
        41,
        MODIFIED,
        "entry 41 was modified: its content does not match its commitment",
    )


def test_changed_content_and_commitment_is_modified(ledger: LedgerSimulator) -> None:
    ledger.modify(41, recommit=True)
    expect(
        audit(ledger),
        41,
        MODIFIED,
        "entry 41 was modified: its commitment is not the leaf the node's tree holds",
    )


def test_a_deleted_and_renumbered_entry_is_missing(ledger: LedgerSimulator) -> None:
    ledger.delete(17)
    expect(
        audit(ledger),
        17,
        MISSING,
        "entry 17 is missing: the entries after it were moved down by one",
    )


def test_a_deleted_entry_leaves_an_index_gap(ledger: LedgerSimulator) -> None:
    ledger.delete(17, renumber=False)
    expect(audit(ledger), 17, MISSING, "entry 17 is missing: the export goes from index 16 to 18")


def test_a_deleted_first_entry_is_missing(ledger: LedgerSimulator) -> None:
    ledger.delete(0, renumber=False)
    expect(audit(ledger), 0, MISSING, "entry 0 is missing: the export starts at 1")


def test_an_inserted_entry_is_found(ledger: LedgerSimulator) -> None:
    ledger.insert(23)
    expect(
        audit(ledger),
        23,
        INSERTED,
        "an entry was inserted at index 23: the entries after it were moved up by one",
    )


def test_an_entry_appended_behind_the_tree_is_inserted(ledger: LedgerSimulator) -> None:
    ledger.insert(ENTRIES)
    expect(audit(ledger), ENTRIES, INSERTED)


def test_a_duplicated_index_is_inserted(ledger: LedgerSimulator) -> None:
    ledger.rows.insert(11, replace(ledger.rows[10]))
    expect(audit(ledger), 11, INSERTED, "an entry was inserted at index 11: it repeats index 10")


@pytest.mark.parametrize(("i", "j"), [(30, 31), (5, 44), (0, 49)])
def test_swapped_entries_are_reordered(ledger: LedgerSimulator, i: int, j: int) -> None:
    ledger.swap(i, j)
    expect(audit(ledger), i, REORDERED, f"entries {i} and {j} were swapped")


def test_an_export_in_the_wrong_order_is_reordered(ledger: LedgerSimulator) -> None:
    ledger.rows[20], ledger.rows[21] = ledger.rows[21], ledger.rows[20]
    expect(audit(ledger), 20, REORDERED, "entry 21 stands at position 20, out of order")


def test_a_truncated_tail_is_reported(ledger: LedgerSimulator) -> None:
    ledger.truncate(45)
    expect(
        audit(ledger),
        45,
        TRUNCATED,
        "the export stops at entry 45 but the log signed a tree of 50 entries",
    )


def test_a_cut_tail_with_a_later_entry_is_truncated(ledger: LedgerSimulator) -> None:
    # As a node exports a cut ledger: it ledgers the export itself, at the next index.
    ledger.truncate(45)
    ledger.append(1)
    expect(
        audit(ledger),
        45,
        TRUNCATED,
        "the export is cut at entry 45: it jumps from index 44 to 50, past the 50 entries the "
        "log signed",
    )


def test_a_deleted_last_signed_entry_before_unsigned_ones_is_truncated(
    ledger: LedgerSimulator,
) -> None:
    ledger.append(2)
    ledger.delete(49, renumber=False)
    expect(audit(ledger), 49, TRUNCATED)


def test_a_tail_cut_short_of_the_header_count_is_reported(ledger: LedgerSimulator) -> None:
    ledger.append(5)
    ledger.truncate(52)
    expect(audit(ledger), 52, TRUNCATED)


def test_the_first_of_several_tamperings_is_reported(ledger: LedgerSimulator) -> None:
    ledger.modify(40)
    ledger.swap(10, 12)
    ledger.delete(3, renumber=False)
    expect(audit(ledger), 3, MISSING)


def test_a_rewritten_entry_and_tree_leaf_fail_the_checkpoint(ledger: LedgerSimulator) -> None:
    ledger.modify(20, recommit=True)
    ledger.tree_leaves[20] = leaf_hash(ledger.rows[20].commitment)
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.checkpoint_size) == (CHECKPOINT_ROOT, 24)
    assert problem.detail == (
        "checkpoint 24 is signed by the log but its root matches neither the entries nor the "
        "node's tree: entries 16 to 23 or the checkpoint were altered; the 4 checkpoint(s) "
        "after it fail too"
    )


def test_a_damaged_stored_tree_is_a_warning_only(ledger: LedgerSimulator) -> None:
    ledger.tree_leaves[20] = bytes(32)
    report = audit(ledger)
    assert report.ok, report.problems
    assert any("its tree is damaged" in w for w in report.warnings)


def test_a_damaged_tree_does_not_hide_a_later_tampering(ledger: LedgerSimulator) -> None:
    ledger.tree_leaves[2] = bytes(32)
    ledger.modify(30, recommit=True)
    report = audit(ledger)
    # The tree is no reference once it fails a checkpoint the entries pass: the checkpoint
    # the entries fail is named instead.
    problem = only_problem(report)
    assert (problem.kind, problem.checkpoint_size) == (CHECKPOINT_ROOT, 32)


def test_modified_and_redacted_entries_are_told_apart(ledger: LedgerSimulator) -> None:
    ledger.redact(5)
    ledger.rows[6].salt = b""  # half withheld: no longer the committed bytes
    expect(audit(ledger), 6, MODIFIED)


# --- checkpoints and cosignatures ----------------------------------------------------------


def test_a_garbage_checkpoint_note_fails_its_signature(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[2].note = b"garbage"
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.index, problem.checkpoint_size) == (
        CHECKPOINT_SIGNATURE,
        None,
        None,
    )


def test_a_checkpoint_by_another_key_fails_its_signature(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[2].note = ledger.sign(24, key=SigningKey.generate())
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.checkpoint_size) == (CHECKPOINT_SIGNATURE, 24)
    assert problem.detail == (
        "checkpoint 24 is not validly signed by the log: no known key signed this note"
    )


def test_a_checkpoint_by_a_witness_key_fails_its_signature(ledger: LedgerSimulator) -> None:
    witness = FEDERATION.agencies[WITNESS_AGENCIES[0]]
    ledger.checkpoints[2].note = ledger.sign(24, key=witness.signing_key)
    assert only_problem(audit(ledger)).kind == CHECKPOINT_SIGNATURE


def test_a_checkpoint_over_another_tree_fails_its_root(ledger: LedgerSimulator) -> None:
    # A split view: the log signed another tree of size 24, and witnesses were shown it.
    forged = ledger.sign(24, root=leaf_hash(b"another tree"))
    ledger.checkpoints[2].note = forged
    ledger.checkpoints[2].cosignatures = [ledger.cosignature(forged, w) for w in WITNESS_AGENCIES]
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.checkpoint_size) == (CHECKPOINT_ROOT, 24)
    assert problem.detail == (
        "checkpoint 24 is signed by the log but its root matches neither the entries nor the "
        "node's tree: entries 16 to 23 or the checkpoint were altered"
    )


def test_cosignatures_of_the_replaced_checkpoint_fail_too(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[2].note = ledger.sign(24, root=leaf_hash(b"another tree"))
    report = audit(ledger)
    assert [(p.kind, p.checkpoint_size) for p in report.problems] == [
        (COSIGNATURE, 24),
        (COSIGNATURE, 24),
        (CHECKPOINT_ROOT, 24),
    ]


def test_checkpoints_must_grow(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[2], ledger.checkpoints[3] = ledger.checkpoints[3], ledger.checkpoints[2]
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.checkpoint_size) == (CHECKPOINT_ORDER, 24)


def test_a_bad_cosignature_is_a_problem(ledger: LedgerSimulator) -> None:
    row = ledger.checkpoints[1]
    other = ledger.checkpoints[2]
    row.cosignatures[0] = other.cosignatures[0]  # a valid line, but over another checkpoint
    problem = only_problem(audit(ledger))
    assert (problem.kind, problem.checkpoint_size) == (COSIGNATURE, 16)
    assert problem.detail == "the cosignature of FR-OCRTEH on checkpoint 16 does not verify"


def test_an_unparsable_cosignature_is_a_problem(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[1].cosignatures.append("— not a signature")
    assert only_problem(audit(ledger)).kind == COSIGNATURE


def test_cosignatures_are_counted_per_witness(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[0].cosignatures.pop()
    ledger.checkpoints[1].cosignatures.clear()
    report = audit(ledger)
    assert report.ok
    assert report.cosigned_by == {"DE-BKA": 5, "FR-OCRTEH": 6}
    assert "uncosigned: checkpoint 16 has no valid cosignature" in report.warnings


def test_the_latest_checkpoint_may_wait_for_its_witnesses(ledger: LedgerSimulator) -> None:
    ledger.checkpoints[-1].cosignatures.clear()
    report = audit(ledger, trusted=FEDERATION.directory())
    assert report.ok
    assert report.warnings == []


def test_a_cosignature_by_an_unknown_key_is_not_counted(ledger: LedgerSimulator) -> None:
    note = ledger.checkpoints[0].note
    own = ledger.cosignature(note, WITNESS_AGENCIES[0]).replace(
        f"/{WITNESS_AGENCIES[0]}/", f"/{LOG_AGENCY}/"
    )
    ledger.checkpoints[0].cosignatures = [own]
    report = audit(ledger)
    assert report.ok
    assert report.cosigned_by == dict.fromkeys(sorted(WITNESS_AGENCIES), 6)
    assert any("the export's directory does not list" in w for w in report.warnings)


# --- the directory and the header -----------------------------------------------------------


def test_a_directory_of_other_admins_fails_against_the_trusted_one() -> None:
    trusted = FEDERATION.directory()
    other = FederationSimulator(federation_id=FEDERATION_ID)
    other.agencies = FEDERATION.agencies
    other.version = 2
    ledger = LedgerSimulator(other).grow(10, every=5)
    report = audit(ledger, trusted=trusted)
    problem = only_problem(report)
    assert problem.kind == DIRECTORY
    assert problem.detail == (
        "the export's directory does not verify: the directory has 0 signatures of the "
        "administrators trusted until now; they require 2"
    )
    assert report.directory_admins == [a.public.key_id for a in other.admins]


def test_an_older_directory_than_the_trusted_one_fails() -> None:
    federation = build_federation()
    ledger = LedgerSimulator(federation).grow(10, every=5)
    federation.version = 2
    problem = only_problem(audit(ledger, trusted=federation.directory()))
    assert problem.kind == DIRECTORY
    assert "not newer than the trusted version 2" in problem.detail


def test_a_directory_below_threshold_fails(ledger: LedgerSimulator) -> None:
    ledger.signed_directory = FEDERATION.publish(signers=FEDERATION.signing_admins()[:1])
    assert only_problem(audit(ledger)).kind == DIRECTORY


def test_an_unreadable_directory_still_locates_tampering(ledger: LedgerSimulator) -> None:
    ledger.signed_directory = b"\xff"
    ledger.modify(3)
    report = audit(ledger)
    assert [(p.index, p.kind) for p in report.problems] == [(None, DIRECTORY), (3, MODIFIED)]
    assert report.directory_admins == []


def test_a_directory_with_an_unusable_federation_id_fails(ledger: LedgerSimulator) -> None:
    federation = build_federation()
    federation.federation_id = "call to action"  # no spaces in a note key name
    ledger.signed_directory = federation.publish()
    report = audit(ledger)
    assert [p.kind for p in report.problems] == [HEADER, DIRECTORY]
    assert report.problems[1].detail.startswith("the export's directory is unusable: key name")


def test_a_log_outside_the_directory_fails() -> None:
    federation = build_federation()
    ledger = LedgerSimulator(federation).grow(10, every=5)
    ledger.signed_directory = federation.publish(federation.directory().without_agency(LOG_AGENCY))
    report = audit(ledger)
    assert report.problems[0].kind == DIRECTORY
    assert "lists no signing key of 'GB-NCA'" in report.problems[0].detail


def test_a_header_naming_another_log_is_a_problem(ledger: LedgerSimulator) -> None:
    records = ledger.export()
    records[0].header.origin = "mlax.call-to-action/DE-BKA"
    problem = only_problem(verify_export(records, trusted_directory=None))
    assert problem.kind == HEADER


def test_more_entries_than_the_header_announces_is_a_problem(ledger: LedgerSimulator) -> None:
    records = ledger.export()
    records[0].header.entries = ENTRIES - 1
    problem = only_problem(verify_export(records, trusted_directory=None))
    assert problem.kind == HEADER


# --- streams that are not an export --------------------------------------------------------


def reorder(records: list[lpb.LedgerExportRecord]) -> list[lpb.LedgerExportRecord]:
    return [records[0], records[-1], *records[1:-1]]


@pytest.mark.parametrize(
    ("mangle", "why"),
    [
        (lambda r: [], "does not start with its header"),
        (lambda r: r[1:], "does not start with its header"),
        (reorder, "an entry record where only checkpoints may follow"),
        (lambda r: [*r, r[0]], "a second header record"),
        (lambda r: [*r, lpb.LedgerExportRecord()], "an empty record"),
    ],
)
def test_a_stream_out_of_shape_is_malformed(
    ledger: LedgerSimulator,
    mangle: Callable[[list[lpb.LedgerExportRecord]], list[lpb.LedgerExportRecord]],
    why: str,
) -> None:
    with pytest.raises(MalformedExportError, match=why):
        verify_export(mangle(ledger.export()), trusted_directory=None)


def test_another_format_is_malformed(ledger: LedgerSimulator) -> None:
    records = ledger.export()
    records[0].header.format = "mlax-ledger-export/v2"
    with pytest.raises(MalformedExportError, match="this auditor reads"):
        verify_export(records, trusted_directory=None)


def test_a_truncated_file_is_malformed(ledger: LedgerSimulator) -> None:
    data = ledger.export_bytes()[:-5]
    with pytest.raises(MalformedExportError, match="ends in the middle"):
        verify_file(data)


def test_the_inlined_commitment_is_the_ledger_commitment(ledger: LedgerSimulator) -> None:
    # The auditor hashes PAE inline for speed; it must stay the definition's bytes.
    row = ledger.rows[0]
    assert commitment(row.salt, row.entry) == row.commitment
    ledger.rows[0].salt = b"\x01" * 7  # an odd salt length is still hashed as PAE
    ledger.rows[0].commitment = commitment(ledger.rows[0].salt, row.entry)
    expect(
        audit(ledger),
        0,
        MODIFIED,
        "entry 0 was modified: its commitment is not the leaf the node's tree holds",
    )


# --- any tampering, anywhere ----------------------------------------------------------------

TAMPERINGS = ["modify", "recommit", "delete", "gap", "insert", "swap"]


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(min_value=2, max_value=60),
    every=st.integers(min_value=3, max_value=12),
    tampering=st.sampled_from(TAMPERINGS),
    data=st.data(),
)
def test_any_tampering_is_found_at_its_index(
    size: int, every: int, tampering: str, data: st.DataObject
) -> None:
    ledger = LedgerSimulator(FEDERATION, seed=size).grow(size, every=every)
    at = data.draw(st.integers(min_value=0, max_value=size - 1), label="at")
    for other in data.draw(st.lists(st.integers(0, size - 1), max_size=3), label="redacted"):
        if other != at:
            ledger.redact(other)
    allowed = {MODIFIED}
    if tampering == "modify":
        ledger.modify(at)
    elif tampering == "recommit":
        ledger.modify(at, recommit=True)
    elif tampering == "delete":
        ledger.delete(at)
        # Near the end nothing shows what came after the deleted entry.
        allowed = {MISSING} if at < size - 2 else {MODIFIED, TRUNCATED}
    elif tampering == "gap":
        ledger.delete(at, renumber=False)
        allowed = {MISSING} if at < size - 1 else {TRUNCATED}
    elif tampering == "insert":
        at = data.draw(st.integers(min_value=0, max_value=size), label="insert at")
        ledger.insert(at)
        allowed = {INSERTED}
    else:
        other = data.draw(st.integers(min_value=0, max_value=size - 1), label="with")
        if other == at:
            return
        ledger.swap(at, other)
        at = min(at, other)
        allowed = {REORDERED}
    report = audit(ledger)
    problem = only_problem(report)
    assert problem.index == at
    assert problem.kind in allowed, problem


SMALL = LedgerSimulator(FEDERATION).grow(12, every=5)
SMALL_BYTES = SMALL.export_bytes()


def _entry_bytes() -> set[int]:
    """Offsets of the entries' index, commitment, salt and content in SMALL_BYTES.

    Not the stored tree's leaf (each record's last 34 bytes): a change there leaves the
    entries matching their checkpoints and is only a warning about the node's tree.
    """
    offsets: set[int] = set()
    position = 0
    for record in SMALL.export():
        size = len(encode_record(record))
        if record.WhichOneof("record") == "entry":
            offsets.update(range(position, position + size - 34))
        position += size
    return offsets


ENTRY_BYTES = _entry_bytes()


@settings(max_examples=150, deadline=None)
@given(at=st.integers(0, len(SMALL_BYTES) - 1), xor=st.integers(1, 255))
def test_a_flipped_byte_is_malformed_or_reported(at: int, xor: int) -> None:
    data = bytearray(SMALL_BYTES)
    data[at] ^= xor
    try:
        report = verify_file(bytes(data))
    except MalformedExportError:
        return
    if at in ENTRY_BYTES:
        assert not report.ok


# --- encodings a node never writes ---------------------------------------------------------
#
# From a file the verifier reads a run of entry records column by column (every index,
# then every commitment, ...). Fields moved between records, missing, repeated or of
# another wire type would line those columns up differently from the records; whatever
# the bytes, the report must be the one reading each record alone gives (`verify_file`
# checks it), which is what any other protobuf reader of the file sees.


def _field(number: int, value: bytes | int) -> bytes:
    if isinstance(value, int):
        return encode_varint(number << 3) + encode_varint(value)
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


def _fields(entry: lpb.LedgerEntry) -> dict[str, bytes]:
    return {
        "index": _field(1, entry.index),
        "commitment": _field(2, entry.commitment),
        "salt": _field(3, entry.salt),
        "entry": _field(4, entry.entry),
        "tree_leaf": _field(5, entry.tree_leaf),
    }


CANONICAL = ("index", "commitment", "salt", "entry", "tree_leaf")


def _recoded(
    ledger: LedgerSimulator, contents: Callable[[list[dict[str, bytes]]], dict[int, bytes]]
) -> bytes:
    """The export with the given entries' contents (by index) encoded by hand."""
    records = ledger.export()
    fields = [_fields(r.entry) for r in records if r.WhichOneof("record") == "entry"]
    recoded = contents(fields)
    out = []
    for record in records:
        if record.WhichOneof("record") == "entry" and record.entry.index in recoded:
            content = recoded[record.entry.index]
            body = b"\x12" + encode_varint(len(content)) + content
            out.append(encode_varint(len(body)) + body)
        else:
            out.append(encode_record(record))
    return b"".join(out)


def _join(fields: dict[str, bytes], names: tuple[str, ...]) -> bytes:
    return b"".join(fields[name] for name in names)


RECODINGS: dict[str, tuple[Callable[[list[dict[str, bytes]]], dict[int, bytes]], bool]] = {
    "fields in another order": (
        lambda f: {4: _join(f[4], ("salt", "index", "tree_leaf", "entry", "commitment"))},
        True,
    ),
    "a field twice, with its value": (
        lambda f: {4: _join(f[4], CANONICAL) + f[4]["salt"]},
        True,
    ),
    "an unknown field": (lambda f: {4: _join(f[4], CANONICAL) + _field(9, b"x" * 40)}, True),
    "the salt and the commitment traded between neighbours": (
        lambda f: {
            4: f[4]["index"]
            + f[4]["commitment"]
            + f[5]["commitment"]
            + f[4]["entry"]
            + f[4]["tree_leaf"],
            5: f[5]["index"] + f[4]["salt"] + f[5]["salt"] + f[5]["entry"] + f[5]["tree_leaf"],
        },
        False,
    ),
    "an index moved into the next record": (
        lambda f: {
            4: _join(f[4], CANONICAL[1:]),
            5: f[4]["index"] + _join(f[5], CANONICAL),
        },
        False,
    ),
    "an index in another wire type": (
        lambda f: {
            4: _join(f[4], CANONICAL[1:])
            + _field(1, encode_varint(int.from_bytes(f[4]["index"][1:], "little")))
        },
        False,
    ),
    "a packed list of indexes after the fields": (
        lambda f: {4: _join(f[4], CANONICAL) + _field(1, encode_varint(4) + encode_varint(5))},
        True,  # a field of another wire type: unknown to the entry, so ignored
    ),
    "an index written out as zero": (
        lambda f: {4: _field(1, 0) + _join(f[4], CANONICAL[1:])},
        False,
    ),
    "stored leaves split across records differently": (
        lambda f: {
            4: _join(f[4], CANONICAL[:4]) + _field(5, f[4]["tree_leaf"][2:-1]),
            5: _join(f[5], CANONICAL[:4])
            + _field(5, f[4]["tree_leaf"][-1:] + f[5]["tree_leaf"][2:]),
        },
        True,  # the entries verify; only the node's stored tree is damaged (a warning)
    ),
}


@pytest.mark.parametrize("name", sorted(RECODINGS))
def test_entries_encoded_otherwise_verify_as_each_record_reads(name: str) -> None:
    ledger = LedgerSimulator(FEDERATION).grow(12, every=6)
    recode, ok = RECODINGS[name]
    report = verify_file(_recoded(ledger, recode))
    assert report.ok is ok, report.problems
