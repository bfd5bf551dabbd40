"""A witness's decision on one C2SP tlog-witness add-checkpoint request, with no I/O.

The caller loads the latest checkpoint it cosigned for the note's origin (see
`unverified_origin` to know which), calls `Witness.add_checkpoint`, and on success stores
`Cosigned.record` in the same transaction that re-checked the stored size, so two
concurrent requests cannot roll the record back (tlog-witness, "add-checkpoint").

Checks, in order, each with its own error:

1. the note parses and its origin is a log this witness follows: `UnknownOriginError`;
2. a trusted key of that log signed it: `NoteSignatureError`;
3. the body is a checkpoint: `MalformedCheckpointError`;
4. it is not smaller than the latest cosigned size: `CheckpointConflictError`;
5. the request's old size is at most the checkpoint size: `MalformedProofError`;
6. the old size is the latest cosigned size: `CheckpointConflictError` with `known_size`;
7. the proof links the two: `MalformedProofError` for a proof of the wrong shape,
   `SplitViewError` (evidence: both notes and the proof) when it does not verify or when
   the sizes are equal and the roots differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from exchange.ledger.checkpoint import Checkpoint, cosign, open_checkpoint, unverified_origin
from exchange.ledger.errors import (
    CheckpointConflictError,
    ConsistencyProofError,
    MalformedProofError,
    SplitViewError,
    UnknownOriginError,
)
from exchange.ledger.merkle import verify_consistency
from exchange.ledger.note import NoteVerifier


@dataclass(frozen=True)
class WitnessedCheckpoint:
    """The latest checkpoint a witness cosigned for one log, with the log-signed note."""

    checkpoint: Checkpoint
    note: bytes


@dataclass(frozen=True)
class Cosigned:
    """An accepted checkpoint: the record to persist and the cosignature line to return."""

    record: WitnessedCheckpoint
    cosignature: str


@dataclass(frozen=True, eq=False)
class Witness:
    """A cosigner: its note key name, Ed25519 key, and the logs (origin to keys) it follows."""

    name: str
    signing_key: SigningKey = field(repr=False)
    logs: Mapping[str, Sequence[NoteVerifier]]

    def add_checkpoint(
        self,
        note: bytes,
        old_size: int,
        proof: Sequence[bytes],
        latest: WitnessedCheckpoint | None,
        timestamp: int,
    ) -> Cosigned:
        """Cosign `note` if it extends `latest` by `proof` from `old_size`; raise otherwise."""
        origin = unverified_origin(note)
        verifiers = self.logs.get(origin)
        if not verifiers:
            raise UnknownOriginError(f"This witness does not follow log {origin!r}.")
        checkpoint = open_checkpoint(note, origin, verifiers)
        if latest is not None and latest.checkpoint.origin != origin:
            raise ValueError("The latest record passed in belongs to another log.")
        known_size = 0 if latest is None else latest.checkpoint.size

        if checkpoint.size < known_size:
            raise CheckpointConflictError(
                f"Checkpoint size {checkpoint.size} is older than the cosigned size {known_size}.",
                known_size=known_size,
            )
        if not 0 <= old_size <= checkpoint.size:
            raise MalformedProofError(
                f"Old size {old_size} is not between 0 and the checkpoint size {checkpoint.size}."
            )
        if old_size != known_size:
            raise CheckpointConflictError(
                f"The latest cosigned size of {origin} is {known_size}, not {old_size}.",
                known_size=known_size,
            )
        if latest is None or known_size == 0:
            # Every tree extends the empty one; a proof from size 0 would prove nothing.
            if proof:
                raise MalformedProofError("A proof from size 0 must be empty.")
        else:
            self._check_consistency(latest, note, checkpoint, proof)

        return Cosigned(
            record=WitnessedCheckpoint(checkpoint, note),
            cosignature=cosign(checkpoint, self.name, self.signing_key, timestamp),
        )

    @staticmethod
    def _check_consistency(
        latest: WitnessedCheckpoint, note: bytes, checkpoint: Checkpoint, proof: Sequence[bytes]
    ) -> None:
        old = latest.checkpoint
        if old.size == checkpoint.size and old.root_hash != checkpoint.root_hash:
            if proof:
                raise MalformedProofError("Equal tree sizes need an empty consistency proof.")
            raise SplitViewError(
                f"Log {old.origin} signed two different roots for size {old.size}.",
                known_note=latest.note,
                new_note=note,
                proof=proof,
                conclusive=True,
            )
        try:
            verify_consistency(
                old.size, checkpoint.size, old.root_hash, checkpoint.root_hash, proof
            )
        except ConsistencyProofError as err:
            raise SplitViewError(
                f"Log {old.origin} at size {checkpoint.size} does not extend its tree of size "
                f"{old.size} by the proof given.",
                known_note=latest.note,
                new_note=note,
                proof=proof,
                conclusive=False,
            ) from err
