"""How MLAX names ledgers and witnesses, and which directory keys vouch for each.

A node's ledger is the C2SP log ``mlax.<federation>/<agency>``: that origin is also the
note key name its checkpoints are signed under, with the agency's Ed25519 signing keys
from the directory. The same agency cosigns its peers' checkpoints as the witness
``mlax.<federation>/<agency>/witness`` with the same signing keys.
"""

from __future__ import annotations

from exchange.directory import Directory
from exchange.ledger.checkpoint import CosignatureVerifier
from exchange.ledger.note import Ed25519Verifier


def log_origin(federation_id: str, agency_id: str) -> str:
    """The C2SP origin (and note key name) of an agency's ledger."""
    return f"mlax.{federation_id}/{agency_id}"


def witness_name(federation_id: str, agency_id: str) -> str:
    """The note key name an agency cosigns its peers' checkpoints with."""
    return f"mlax.{federation_id}/{agency_id}/witness"


def log_verifiers(
    directory: Directory, agency_id: str, at_ms: int | None = None
) -> list[Ed25519Verifier]:
    """The keys that may sign `agency_id`'s checkpoints; empty if it is not a member.

    With `at_ms` (live witnessing), only keys valid then and not revoked; without it
    (auditing history, where a checkpoint carries no time), every key the card lists.
    """
    card = directory.agency(agency_id)
    if card is None:
        return []
    origin = log_origin(directory.federation_id, agency_id)
    keys = card.signing_keys
    if at_ms is not None:
        keys = tuple(k for k in keys if k.valid_at(at_ms) and card.revocation(k.key_id) is None)
    return [Ed25519Verifier(origin, key.public_key) for key in keys]


def witness_verifiers(
    directory: Directory, exclude_agency: str
) -> dict[str, list[CosignatureVerifier]]:
    """Every member's cosigning keys by agency id, except `exclude_agency` (the log itself)."""
    return {
        card.agency_id: [
            CosignatureVerifier(
                witness_name(directory.federation_id, card.agency_id), key.public_key
            )
            for key in card.signing_keys
        ]
        for card in directory.agencies
        if card.agency_id != exclude_agency
    }
