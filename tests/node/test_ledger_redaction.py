"""The ledger redaction rule (node.storage.ledger.concerns): which entries a peer may read."""

from __future__ import annotations

import pytest

from exchange.ledger_entry import LedgerEntry
from node.storage.ledger import PEER_READABLE, concerns

GB, FR, NG = "GB-NCA", "FR-OCRTEH", "NG-NAPTIP"


def _entry(kind: str, **fields: str | int) -> bytes:
    # Built without LedgerEntry.of's schema check: the rule reads any entry's bytes,
    # including kinds and fields no node of this version writes.
    return LedgerEntry(kind, 1, tuple(sorted(fields.items()))).to_bytes()


def test_a_refused_forward_is_read_by_no_peer() -> None:
    """Defect 5: the agency a note was NOT forwarded to read the refusal naming it."""
    entry = _entry(
        "message.forward_refused",
        message_id="m",
        recipient=NG,
        officer="fr-officer",
        reason="no_onward_transmission",
    )
    assert not any(concerns(entry, a) for a in (GB, FR, NG))


def test_a_querys_answers_are_not_shown_to_the_holder_asked() -> None:
    entry = _entry("match.answer", query_id="q", peer=NG, query=0, result="hit", band="high")
    assert not concerns(entry, NG)


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("message.submitted", "recipient"),
        ("message.received", "sender"),
        ("receipt.stored", "receiver"),
        ("message.forwarded", "recipient"),
        ("message.rejected", "peer"),
        ("case.transition", "peer"),
        ("attachment.received", "peer"),
        ("witness.split_view", "peer"),
    ],
)
def test_the_other_party_reads_the_entries_of_its_exchanges(kind: str, field: str) -> None:
    entry = _entry(kind, **{field: NG})
    assert concerns(entry, NG)
    assert not concerns(entry, FR)


def test_party_fields_count_only_in_their_kind() -> None:
    # A `recipient` in an entry whose kind names none (or another field) admits no one,
    # and a kind nobody listed is redacted for every peer.
    assert not concerns(_entry("message.received", recipient=NG, sender=FR), NG)
    assert not concerns(_entry("case.created", requested=NG, peer=NG), NG)
    assert not concerns(_entry("some.future_kind", peer=NG), NG)
    assert not concerns(b"", NG)
    assert not concerns(None, NG)


def test_every_peer_readable_kind_names_a_party_field() -> None:
    assert set(PEER_READABLE.values()) <= {"sender", "recipient", "receiver", "peer"}
    assert "message.forward_refused" not in PEER_READABLE
