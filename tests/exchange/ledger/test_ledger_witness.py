"""The witness's add-checkpoint decision: cosign consistent growth, refuse everything else."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from nacl.signing import SigningKey

from exchange.ledger import (
    EMPTY_ROOT,
    Checkpoint,
    CheckpointConflictError,
    CompactRange,
    ConsistencyProofError,
    CosignatureVerifier,
    Ed25519Verifier,
    MalformedCheckpointError,
    MalformedNoteError,
    MalformedProofError,
    NoteSignatureError,
    SplitViewError,
    UnknownOriginError,
    Witness,
    WitnessedCheckpoint,
    consistency_proof,
    leaf_hash,
    sign_checkpoint,
    sign_note,
    verify_cosignature,
)

ORIGIN = "mlax.example/agency-a/ledger"
LOG_KEY = SigningKey(b"\x11" * 32)
WITNESS_NAME = "mlax.example/agency-b/witness"
WITNESS_KEY = SigningKey(b"\x22" * 32)
WITNESS = Witness(
    WITNESS_NAME, WITNESS_KEY, {ORIGIN: [Ed25519Verifier.for_signing_key(ORIGIN, LOG_KEY)]}
)
COSIGNER = CosignatureVerifier.for_signing_key(WITNESS_NAME, WITNESS_KEY)
NOW = 1_760_000_000


class Log:
    """An in-memory log: the tree and the nodes a storage layer would keep."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.tree = CompactRange()
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.roots: list[bytes] = [EMPTY_ROOT]
        for leaf in leaves:
            for level, index, value in self.tree.append(leaf_hash(leaf)):
                self.nodes[level, index] = value
            self.roots.append(self.tree.root())

    def note(self, size: int, key: SigningKey = LOG_KEY) -> bytes:
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.roots[size]), ORIGIN, key)

    def proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, lambda level, index: self.nodes[level, index])

    def witnessed(self, size: int) -> WitnessedCheckpoint:
        note = self.note(size)
        return WitnessedCheckpoint(Checkpoint(ORIGIN, size, self.roots[size]), note)


HONEST = Log([b"entry %d" % i for i in range(40)])
# Same first three entries, then a different history: a forked view of the same log.
FORK = Log([b"entry %d" % i for i in range(3)] + [b"forged %d" % i for i in range(37)])


def test_first_checkpoint_is_cosigned_from_size_zero() -> None:
    result = WITNESS.add_checkpoint(HONEST.note(5), 0, [], None, NOW)
    assert result.record.checkpoint.size == 5
    assert result.record.note == HONEST.note(5)
    assert verify_cosignature(result.record.checkpoint, result.cosignature, COSIGNER) == NOW


def test_consistent_growth_is_cosigned() -> None:
    latest = HONEST.witnessed(5)
    for new in (6, 8, 13, 40):
        result = WITNESS.add_checkpoint(
            HONEST.note(new),
            latest.checkpoint.size,
            HONEST.proof(latest.checkpoint.size, new),
            latest,
            NOW,
        )
        assert result.record.checkpoint.root_hash == HONEST.roots[new]
        latest = result.record


def test_same_checkpoint_again_is_cosigned_again() -> None:
    latest = HONEST.witnessed(7)
    result = WITNESS.add_checkpoint(HONEST.note(7), 7, [], latest, NOW + 60)
    assert verify_cosignature(latest.checkpoint, result.cosignature, COSIGNER) == NOW + 60


def test_forged_signature_is_refused() -> None:
    forged = HONEST.note(9, key=SigningKey(b"\x33" * 32))
    with pytest.raises(NoteSignatureError, match="No known key"):
        WITNESS.add_checkpoint(forged, 5, HONEST.proof(5, 9), HONEST.witnessed(5), NOW)
    tampered = HONEST.note(9).replace(b"\n9\n", b"\n8\n")
    with pytest.raises(NoteSignatureError, match="does not verify"):
        WITNESS.add_checkpoint(tampered, 5, HONEST.proof(5, 8), HONEST.witnessed(5), NOW)


def test_unknown_origin_is_refused() -> None:
    other = sign_checkpoint(
        Checkpoint("mlax.example/z", 1, HONEST.roots[1]), "mlax.example/z", LOG_KEY
    )
    with pytest.raises(UnknownOriginError, match="does not follow"):
        WITNESS.add_checkpoint(other, 0, [], None, NOW)


def test_garbage_and_non_checkpoints_are_refused() -> None:
    with pytest.raises(MalformedNoteError):
        WITNESS.add_checkpoint(b"not a note", 0, [], None, NOW)
    with pytest.raises(MalformedCheckpointError):
        WITNESS.add_checkpoint(sign_note(ORIGIN + "\n", ORIGIN, LOG_KEY), 0, [], None, NOW)


def test_stale_checkpoint_is_a_conflict_naming_the_known_size() -> None:
    with pytest.raises(CheckpointConflictError, match="older") as caught:
        WITNESS.add_checkpoint(HONEST.note(4), 4, [], HONEST.witnessed(10), NOW)
    assert caught.value.known_size == 10


def test_wrong_old_size_is_a_conflict_naming_the_known_size() -> None:
    with pytest.raises(CheckpointConflictError) as caught:
        WITNESS.add_checkpoint(HONEST.note(20), 8, HONEST.proof(8, 20), HONEST.witnessed(10), NOW)
    assert caught.value.known_size == 10
    with pytest.raises(CheckpointConflictError) as caught:
        WITNESS.add_checkpoint(HONEST.note(20), 0, [], HONEST.witnessed(10), NOW)
    assert caught.value.known_size == 10
    with pytest.raises(CheckpointConflictError) as caught:
        WITNESS.add_checkpoint(HONEST.note(20), 3, HONEST.proof(3, 20), None, NOW)
    assert caught.value.known_size == 0


def test_malformed_requests_are_refused_without_evidence() -> None:
    latest = HONEST.witnessed(10)
    with pytest.raises(MalformedProofError, match="between 0"):
        WITNESS.add_checkpoint(HONEST.note(12), 13, [], latest, NOW)
    with pytest.raises(MalformedProofError, match="size 0 must be empty"):
        WITNESS.add_checkpoint(HONEST.note(12), 0, HONEST.proof(3, 12), None, NOW)
    with pytest.raises(MalformedProofError, match="too short"):
        WITNESS.add_checkpoint(HONEST.note(12), 10, HONEST.proof(10, 12)[:-1], latest, NOW)
    with pytest.raises(MalformedProofError, match="32 bytes"):
        WITNESS.add_checkpoint(HONEST.note(12), 10, [b"short"], latest, NOW)


def test_same_size_different_root_is_a_conclusive_split_view() -> None:
    known, forked = HONEST.note(10), FORK.note(10)
    latest = HONEST.witnessed(10)
    with pytest.raises(SplitViewError, match="two different roots") as caught:
        WITNESS.add_checkpoint(forked, 10, [], latest, NOW)
    assert caught.value.known_note == known
    assert caught.value.new_note == forked
    assert caught.value.conclusive
    assert caught.value.status == "FAILED_PRECONDITION"


def test_inconsistent_growth_is_a_split_view_with_both_notes() -> None:
    latest = HONEST.witnessed(10)
    forked = FORK.note(30)
    proof = FORK.proof(10, 30)  # the best the forking log can offer
    with pytest.raises(SplitViewError, match="does not extend") as caught:
        WITNESS.add_checkpoint(forked, 10, proof, latest, NOW)
    evidence = caught.value
    assert (evidence.known_note, evidence.new_note) == (latest.note, forked)
    assert evidence.proof == tuple(proof)
    assert not evidence.conclusive
    assert isinstance(evidence, ConsistencyProofError)


def test_latest_record_of_another_log_is_a_caller_bug() -> None:
    other = WitnessedCheckpoint(Checkpoint("mlax.example/z", 1, HONEST.roots[1]), b"")
    with pytest.raises(ValueError, match="another log"):
        WITNESS.add_checkpoint(HONEST.note(2), 1, HONEST.proof(1, 2), other, NOW)
