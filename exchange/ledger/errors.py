"""Errors of the audit ledger's proofs, signed notes, checkpoints and witnessing.

Each names the gRPC status a node answers with and carries one sentence a person can act
on, like every `MlaxError`. Shape errors (`Malformed*`) mean the bytes never described a
valid object; the others mean a well-formed object failed a check.
"""

from __future__ import annotations

from collections.abc import Sequence

from exchange.errors import AuthError, ConflictError, InputError, Status

# --- Merkle proofs -------------------------------------------------------------------------


class MalformedProofError(InputError):
    """A proof, hash or tree size of the wrong shape (length, range, hash size)."""


class InclusionProofError(InputError):
    """A well-formed inclusion proof that does not lead to the expected root."""


class ConsistencyProofError(InputError):
    """A well-formed consistency proof that does not link the two roots."""


# --- signed notes and checkpoints ----------------------------------------------------------


class MalformedNoteError(InputError):
    """Bytes that are not a C2SP signed note, or a key or signature line that does not parse."""


class NoteSignatureError(AuthError):
    """No known key signed the note, or a known key's signature does not verify."""

    status = Status.UNAUTHENTICATED


class MalformedCheckpointError(InputError):
    """A note text that is not a C2SP tlog-checkpoint body."""


class UnknownOriginError(ConflictError):
    """A checkpoint of a log this party does not follow, or not the log it expected."""

    status = Status.FAILED_PRECONDITION


# --- witnessing ----------------------------------------------------------------------------


class CheckpointConflictError(ConflictError):
    """The submitter's idea of the witness's latest size is wrong, or its checkpoint is stale.

    `known_size` is the size of the latest checkpoint the witness cosigned for the origin,
    so the submitter can retry with a proof from that size (tlog-witness "409 Conflict").
    """

    status = Status.FAILED_PRECONDITION

    def __init__(self, message: str, *, known_size: int) -> None:
        super().__init__(message)
        self.known_size = known_size


class SplitViewError(ConsistencyProofError, ConflictError):
    """Two checkpoints of one origin, both validly signed by the log, that do not agree.

    `known_note` is the signed checkpoint the witness cosigned before, `new_note` the one
    just submitted, and `proof` the consistency proof that came with it: kept as evidence.
    `conclusive` is true when the two notes alone prove the split view (same size, different
    roots); false when only the submitted proof failed, which may also be a broken prover.
    """

    status = Status.FAILED_PRECONDITION

    def __init__(
        self,
        message: str,
        *,
        known_note: bytes,
        new_note: bytes,
        proof: Sequence[bytes],
        conclusive: bool,
    ) -> None:
        super().__init__(message)
        self.known_note = known_note
        self.new_note = new_note
        self.proof = tuple(proof)
        self.conclusive = conclusive
