"""Victim identification on a node: holding records, answering blind evaluations, asking
the federation, and disclosing an identity after a follow-up request.

`MatchDesk` combines the node's two roles, each in its own module:

- the *holder* (node/services/match_holder.py): key generations, loading and rotating
  records, blind evaluation for peers within a quota, and the published index;
- the *querier* (node/services/match_querier.py): copies of the peers' indexes (kept
  fresh by node/workers/matching_sync.py), queries and their lookups;

the follow-up's holder side is node/services/match_disclosure.py (docs/matching.md).
"""

from __future__ import annotations

from exchange.matching.records import VictimQuery
from node.config import MatchingSection
from node.peers.client import PeerClient
from node.services.cases import CaseDesk
from node.services.match_disclosure import parse_reference
from node.services.match_holder import (
    _INDEX_CHUNK,
    _LOAD_CHUNK,
    DOMAIN_BEFORE_FIELD,
    ELEMENT_BYTES,
    HOUR_MS,
    DomainMismatchError,
    Generation,
    HolderBusyError,
    KeyRetiredError,
    MatchHolder,
    QuotaExceededError,
    Rotation,
    _unpack,
)
from node.services.match_pool import VALUE_BYTES, pad_values, truncate
from node.services.match_querier import PAD_KIND, SYNC_LEASE_SECONDS, MatchQuerier, pad_tokens
from node.services.messages import NodeCore


class MatchDesk(MatchHolder, MatchQuerier):
    """Matching operations over the node's database, identity and peers (`PeerClient`):
    the holder's (`MatchHolder`) and the querier's (`MatchQuerier`)."""

    def __init__(
        self, core: NodeCore, cfg: MatchingSection, peers: PeerClient, cases: CaseDesk
    ) -> None:
        MatchHolder.__init__(self, core, cfg)
        MatchQuerier.__init__(self, core, cfg, peers)
        self.cases = cases


__all__ = [
    "DOMAIN_BEFORE_FIELD",
    "ELEMENT_BYTES",
    "HOUR_MS",
    "PAD_KIND",
    "SYNC_LEASE_SECONDS",
    "VALUE_BYTES",
    "_INDEX_CHUNK",
    "_LOAD_CHUNK",
    "DomainMismatchError",
    "Generation",
    "HolderBusyError",
    "KeyRetiredError",
    "MatchDesk",
    "MatchHolder",
    "MatchQuerier",
    "QuotaExceededError",
    "Rotation",
    "VictimQuery",
    "_unpack",
    "pad_tokens",
    "pad_values",
    "parse_reference",
    "truncate",
]
