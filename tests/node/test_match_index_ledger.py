"""`GetMatchIndex` in a loop cannot grow the holder's audit ledger without bound
(node/services/match_holder.py `index`, `ServedCopies`; docs/auditors.md): a call that
serves nothing new is not ledgered, and the same copy (peer, key generation, since,
version) is ledgered at most once an hour. In process: two SimNodes, NG holding."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from sim_peer import GB, NG, MakeNetwork, SimNode
from sqlalchemy import text

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.matching.tokens import TOKEN_DOMAIN
from node.services.messages import Officer

OFFICER = Officer("ng-officer", "officer")
OTHER = "FR-OCRTEH"  # a second peer (the holder takes the caller's agency as given)


def _person(i: int) -> mpb.MatchPerson:
    a, b = "bcdfghjklmnprstvz"[i % 17], "bcdfghjklmnprstvz"[i // 17]
    return mpb.MatchPerson(
        given_name=f"{a.upper()}a{b}ina",
        family_name=f"{b.upper()}o{a}enko",
        sex="F",
        date_of_birth=f"{1930 + 2 * i}-04-12",
    )


def _load(node: SimNode, first: int, count: int) -> int:
    rows = [
        mpb.MatchRecordRow(ref=f"NG-{i}", person=_person(i), line=i + 2)
        for i in range(first, first + count)
    ]
    resp = node.matching.load(OFFICER, iter([mpb.LoadRecordsRequest(rows=rows)]))
    return resp.index_version


def _copy(
    node: SimNode, peer: str, since: int = 0, key_id: str | None = None
) -> list[mpb.MatchIndexChunk]:
    """`peer`'s index call, for its copy of the current key generation (`key_id`: another)."""
    key_id = node.matching.key()[0] if key_id is None else key_id
    req = mpb.MatchIndexRequest(key_id=key_id, since_version=since, token_domain=TOKEN_DOMAIN)
    return list(node.matching.index(peer, req))


def _served(node: SimNode) -> list[tuple[str, int, int]]:
    """The holder's `match.index_served` entries as (peer, since, version), in order."""
    with node.db.read() as s:
        rows = s.execute(
            text("SELECT entry FROM ledger_entries WHERE kind = 'match.index_served' ORDER BY idx")
        ).all()
    docs = [json.loads(r.entry) for r in rows]
    return [(d["peer"], d["since"], d["version"]) for d in docs]


def _syncs(peer: str) -> float:
    return REGISTRY.get_sample_value("mlax_match_index_syncs_total", {"peer": peer}) or 0.0


@pytest.fixture
def net(sim_network: MakeNetwork) -> Iterator[dict[str, SimNode]]:
    network = sim_network()
    yield network
    network[GB].matching.stop_syncs()
    network[NG].matching.close()


def test_fifty_identical_calls_and_fifty_unchanged_ones_ledger_only_the_first_copy(
    net: dict[str, SimNode],
) -> None:
    ng = net[NG]
    version = _load(ng, 0, 3)
    counted = _syncs(GB)

    copies = [_copy(ng, GB) for _ in range(50)]
    # Every call is still answered in full; only the first is ledgered.
    assert all(sum(len(c.entries) for c in chunks) == 3 for chunks in copies)
    assert _served(ng) == [(GB, 0, version)]

    # Up to date: nothing new is served, and nothing is ledgered.
    for _ in range(50):
        (chunk,) = _copy(ng, GB, since=version)
        assert (chunk.version, len(chunk.entries)) == (version, 0)
    # A peer whose copy is past the holder's version (the holder was restored from an
    # older backup) gets everything again, as a reset: the copy from 0, already ledgered.
    for since in range(version + 1, version + 51):
        chunks = _copy(ng, GB, since=since)
        assert chunks[0].reset
        assert sum(len(c.entries) for c in chunks) == 3
    assert _served(ng) == [(GB, 0, version)]
    # Not ledgered, but counted.
    assert _syncs(GB) - counted == 150


def test_a_sync_loop_through_the_querier_grows_the_holders_ledger_by_one(
    net: dict[str, SimNode],
) -> None:
    gb, ng = net[GB], net[NG]
    version = _load(ng, 0, 3)
    for _ in range(20):
        copy = gb.matching.sync(NG, 30)
        assert copy.version == version
    assert _served(ng) == [(GB, 0, version)]


def test_a_new_load_an_hour_and_another_peer_are_ledgered_again(
    net: dict[str, SimNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    ng = net[NG]
    now = [1000.0]
    monkeypatch.setattr(ng.matching._served, "clock", lambda: now[0])
    first = _load(ng, 0, 3)
    _copy(ng, GB)
    _copy(ng, GB, since=first)
    assert _served(ng) == [(GB, 0, first)]

    # A new load: the index grew, so the next copy (and a full one) serves something new.
    second = _load(ng, 3, 2)
    assert second > first
    (chunk,) = _copy(ng, GB, since=first)
    assert len(chunk.entries) == 2
    _copy(ng, GB, since=first)
    _copy(ng, GB)
    assert _served(ng) == [(GB, 0, first), (GB, first, second), (GB, 0, second)]

    # Another peer's copy is its own, though the arguments are the same.
    _copy(ng, OTHER, since=first)
    _copy(ng, OTHER, since=first)
    assert _served(ng)[3:] == [(OTHER, first, second)]

    # A reset (a key this holder does not serve) is ledgered, once: it is a full copy.
    for _ in range(5):
        chunks = _copy(ng, OTHER, key_id="00" * 16)
        assert chunks[0].reset
    assert _served(ng)[4:] == [(OTHER, 0, second)]
    held = len(ng.matching._served)

    # Within the hour the same copy is not ledgered again; after it, once more, and what
    # was held for the past hour is pruned.
    now[0] += 3599
    _copy(ng, GB, since=first)
    assert len(_served(ng)) == 5
    now[0] += 1
    _copy(ng, GB, since=first)
    _copy(ng, GB, since=first)
    assert _served(ng)[5:] == [(GB, first, second)]
    assert held == 5
    assert len(ng.matching._served) == 1
