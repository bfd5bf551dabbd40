"""Which members witness a member's ledger: a bounded set the log cannot choose.

Asking every other member to cosign each checkpoint makes witnessing cost grow with the
federation (36 calls per checkpoint per node at 37 agencies). A log asks `k` witnesses
instead, chosen by rendezvous hashing (ADR 0011, docs/protocol.md 12.6): for the log
`L` of federation `F` and the epoch `e`, every other member `W` of the directory gets the
score

    SHA-256(PAE("mlax/v1/ledger/witness-rank", F, L, LE64(e), W))

and the members with the `k` lowest scores (ties, which SHA-256 makes theoretical, by
agency id) are the witnesses of that log in that epoch. An epoch is
`WITNESS_EPOCH_SECONDS` of POSIX time, so the set rotates every hour and, over a few
days, every member checks every log's consistency.

Nothing in the score is the log's to choose: not the checkpoint, whose size it could
grind by appending entries, nor the order of the directory. Anyone holding the directory
recomputes the set for any time, so a log whose checkpoints carry cosignatures from
outside its set, or none from inside it, is visible to every auditor. Adding or removing
a member changes only the sets that member enters or leaves.
"""

from __future__ import annotations

import hashlib
import struct

from exchange.directory import Directory
from exchange.encoding import CTX_WITNESS_RANK, pae

# The length of one witness epoch, in seconds of POSIX time (a protocol constant: every
# node and auditor must agree on it to agree on the sets).
WITNESS_EPOCH_SECONDS = 3600


def witness_epoch(unix_seconds: int) -> int:
    """The witness epoch that POSIX time `unix_seconds` falls in."""
    return unix_seconds // WITNESS_EPOCH_SECONDS


def witness_score(federation_id: str, log_agency: str, epoch: int, witness: str) -> bytes:
    """The rank key of `witness` for `log_agency`'s checkpoints in `epoch` (lower first)."""
    return hashlib.sha256(
        pae(
            CTX_WITNESS_RANK,
            federation_id.encode(),
            log_agency.encode(),
            struct.pack("<Q", epoch),
            witness.encode(),
        )
    ).digest()


def witness_ranking(directory: Directory, log_agency: str, epoch: int) -> list[str]:
    """Every member but `log_agency`, in the order it asks them to witness in `epoch`."""
    others = [c.agency_id for c in directory.agencies if c.agency_id != log_agency]
    return sorted(
        others,
        key=lambda w: (witness_score(directory.federation_id, log_agency, epoch, w), w),
    )


def assigned_witnesses(directory: Directory, log_agency: str, epoch: int, k: int) -> list[str]:
    """The `k` members that witness `log_agency` in `epoch` (every other member, if fewer).

    ValueError if `k` is not positive: a log with no witness is not witnessed.
    """
    if k < 1:
        raise ValueError(f"A log needs at least one witness (got k = {k}).")
    return witness_ranking(directory, log_agency, epoch)[:k]
