"""The redaction rule names registered kinds only, each by one of its own fields."""

from __future__ import annotations

from exchange.ledger_kinds import Kind
from node.storage.ledger import PEER_READABLE


def test_every_peer_readable_kind_is_registered_and_has_its_party_field() -> None:
    for kind, field in PEER_READABLE.items():
        assert field in Kind(kind).required, kind
