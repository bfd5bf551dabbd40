"""The querier's copies of peers' indexes (node/services/match_replica.py): what a lookup
finds after records are added, updated and removed, a reset staged then switched, and an
interrupted copy resumed; on SQLite and (when MLAX_TEST_PG_URL is set) PostgreSQL."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sim_peer import GB, NG, MakeNetwork
from sqlalchemy import func, select

from exchange._proto.mlax.v1 import matching_pb2 as mpb
from exchange.errors import InvalidFieldError
from exchange.matching.tokens import MAX_TOKENS
from node.devtools.databases import TEST_PG_ENV, pg_database
from node.services import match_holder, match_replica
from node.services.match_replica import BUILDING, COMPLETE, Entry, ReplicaStore
from node.services.messages import Officer
from node.storage.db import Database
from node.storage.models import (
    Base,
    MatchCopyBlockRow,
    MatchCopyDeltaRow,
    MatchCopyRecordRow,
    MatchCopyRow,
)

PEER = "NG-NAPTIP"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ReplicaStore]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'node.db'}")
        Base.metadata.create_all(db.engine)
        yield ReplicaStore(db)
        db.close()
        return
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set")
    with pg_database(base, "mlax_replica") as url:
        db = Database(url)
        Base.metadata.create_all(db.engine)
        yield ReplicaStore(db)
        db.close()


def _values(rng: random.Random, n: int = 48) -> list[int]:
    return sorted({rng.getrandbits(64) - (1 << 63) for _ in range(n)})


def _pack(values: list[int]) -> bytes:
    return b"".join(v.to_bytes(8, "big", signed=True) for v in sorted(values))


def _entry(handle: int, values: list[int], version: int, removed: bool = False) -> Entry:
    return Entry(handle.to_bytes(16, "big"), removed, b"" if removed else _pack(values), version)


def _h(n: int) -> bytes:
    return n.to_bytes(16, "big")


def _rows(store: ReplicaStore, table: type[Base], copy_no: int) -> int:
    with store.db.read() as s:
        return (
            s.scalar(
                select(func.count()).select_from(table).where(table.copy_no == copy_no)  # type: ignore[attr-defined]
            )
            or 0
        )


def test_records_added_updated_and_removed_are_found_as_they_are_now(
    store: ReplicaStore,
) -> None:
    rng = random.Random(1)
    vals = {n: _values(rng) for n in range(1, 6)}
    shared = vals[1][0]
    vals[2][0] = shared  # two records publishing one value (relatives, namesakes)
    copy = store.stage(PEER, "k1", target=1)
    copy = store.apply(copy.copy_no, [_entry(n, vals[n], 1) for n in vals], 1)
    copy = store.finish(copy.copy_no, 1)
    assert (copy.state, copy.version, copy.records) == (COMPLETE, 1, 5)
    assert store.lookup(copy.copy_no, [shared]) == {shared: [_h(1), _h(2)]}
    assert store.lookup(copy.copy_no, [vals[3][5], vals[4][47], 12345]) == {
        vals[3][5]: [_h(3)],
        vals[4][47]: [_h(4)],
    }

    # Version 2: record 3 updated (same handle, new values), record 4 removed.
    new3 = _values(rng)
    copy = store.apply(copy.copy_no, [_entry(3, new3, 2), _entry(4, [], 2, removed=True)], 2)
    copy = store.finish(copy.copy_no, 2)
    assert (copy.version, copy.records) == (2, 4)
    assert store.lookup(copy.copy_no, [vals[3][5], vals[4][47]]) == {}
    assert store.lookup(copy.copy_no, [new3[0]]) == {new3[0]: [_h(3)]}

    # Compaction merges the deltas and drops the replaced entries: same answers.
    assert store.compact(copy.copy_no, everything=True) > 0
    everything = [v for n in (1, 2, 5) for v in vals[n]] + new3
    found = store.lookup(copy.copy_no, everything + vals[3] + vals[4])
    assert set(found) == set(everything)
    assert found[new3[7]] == [_h(3)]
    assert store.size(copy.copy_no)["entry_bytes"] == 12 * len(
        [v for n in (1, 2, 5) for v in vals[n]] + new3
    )


def test_a_large_copy_is_cut_in_blocks_and_every_value_is_found(
    store: ReplicaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_replica, "BLOCK_ENTRIES", 4)  # many blocks per part
    rng = random.Random(2)
    vals = {n: _values(rng) for n in range(1, 301)}
    copy = store.stage(PEER, "k1", target=3)
    for version, part in ((1, range(1, 101)), (2, range(101, 201)), (3, range(201, 301))):
        copy = store.apply(copy.copy_no, [_entry(n, vals[n], version) for n in part], 3)
    copy = store.finish(copy.copy_no, 3)
    assert _rows(store, MatchCopyBlockRow, copy.copy_no) > 256  # more than one block a part
    probe = {vals[n][rng.randrange(48)]: n for n in rng.sample(sorted(vals), 60)}
    found = store.lookup(copy.copy_no, list(probe) + _values(rng, 20))
    assert found == {v: [_h(n)] for v, n in probe.items()}


def test_a_reset_is_staged_and_replaces_the_old_copy_only_once_complete(
    store: ReplicaStore,
) -> None:
    rng = random.Random(3)
    old = _values(rng)
    new = _values(rng)
    first = store.stage(PEER, "k1", target=1)
    first = store.finish(store.apply(first.copy_no, [_entry(1, old, 1)], 1).copy_no, 1)

    staged = store.stage(PEER, "k2", target=5)
    staged = store.apply(staged.copy_no, [_entry(1, new, 5)], 5)
    done, making = store.copies(PEER)
    assert done is not None
    assert making is not None
    assert (done.key_id, making.key_id, making.state) == ("k1", "k2", BUILDING)
    assert store.lookup(done.copy_no, [old[0], new[0]]) == {old[0]: [_h(1)]}

    switched = store.finish(staged.copy_no, 5)
    done, making = store.copies(PEER)
    assert making is None
    assert done == switched
    assert (done.key_id, done.version) == ("k2", 5)
    assert store.lookup(done.copy_no, [old[0], new[0]]) == {new[0]: [_h(1)]}
    # The old generation's rows are gone.
    with store.db.read() as s:
        assert s.get(MatchCopyRow, first.copy_no) is None
    assert _rows(store, MatchCopyRecordRow, first.copy_no) == 0
    assert _rows(store, MatchCopyBlockRow, first.copy_no) == 0
    assert _rows(store, MatchCopyDeltaRow, first.copy_no) == 0


def test_an_interrupted_copy_resumes_where_it_stopped(store: ReplicaStore) -> None:
    rng = random.Random(4)
    vals = {n: _values(rng) for n in range(1, 31)}
    copy = store.stage(PEER, "k1", target=3)
    # Versions 1 and 2 arrived whole, version 3 in part, then the process died.
    copy = store.apply(
        copy.copy_no, [_entry(n, vals[n], (n - 1) // 10 + 1) for n in range(1, 26)], 3
    )

    again = ReplicaStore(store.db)  # a new process
    done, making = again.copies(PEER)
    assert done is None
    assert making is not None
    assert (making.version, making.records, making.progress()) == (2, 25, "25 records so far")
    # The last record it took: a holder that can place it resumes right after it.
    assert again.position(making.copy_no) == (3, _h(25))

    # The resumed stream starts after version 2: version 3 again, whole this time; what
    # was there already is not written twice.
    resumed = [_entry(n, vals[n], 3) for n in range(21, 31)]
    making = again.apply(making.copy_no, resumed, 3)
    assert making.records == 30
    done = again.finish(making.copy_no, 3)
    assert (done.state, done.version, done.records) == (COMPLETE, 3, 30)
    assert _rows(store, MatchCopyRecordRow, done.copy_no) == 30
    probe = [vals[n][0] for n in vals]
    assert again.lookup(done.copy_no, probe) == {vals[n][0]: [_h(n)] for n in vals}


def test_a_malformed_entry_is_refused_and_changes_nothing(store: ReplicaStore) -> None:
    rng = random.Random(5)
    copy = store.stage(PEER, "k1", target=1)
    good = _entry(1, _values(rng), 1)
    short_handle = Entry(b"\x01" * 15, False, _pack(_values(rng)), 1)
    with pytest.raises(InvalidFieldError, match="16 bytes"):
        store.apply(copy.copy_no, [good, short_handle], 1)
    values = _values(rng)
    repeated = values[:-1] + values[:1]  # 48 values, one twice
    for bad in (
        _pack(_values(rng, MAX_TOKENS + 1)),  # too many
        _pack(values[:-1]),  # too few
        b"".join(v.to_bytes(8, "big", signed=True) for v in sorted(repeated)),
        b"".join(v.to_bytes(8, "big", signed=True) for v in reversed(values)),  # unordered
        _pack(values)[:-1],  # not whole values
    ):
        with pytest.raises(InvalidFieldError, match=f"{MAX_TOKENS} distinct values of 8 bytes"):
            store.apply(copy.copy_no, [good, Entry(_h(2), False, bad, 1)], 1)
    _, making = store.copies(PEER)
    assert making is not None
    assert making.records == 0
    assert _rows(store, MatchCopyRecordRow, copy.copy_no) == 0


def test_only_one_process_at_a_time_updates_a_peers_copies(store: ReplicaStore) -> None:
    other = ReplicaStore(store.db)
    assert store.lease(PEER, 60)
    assert not other.lease(PEER, 60)
    assert store.lease(PEER, 60)  # renewed by its holder
    store.release(PEER, synced=True)
    assert other.lease(PEER, 60)


PEOPLE = [
    ("Blessing", "Okonkwo", "F", "1999-04-12"),
    ("Olena", "Shevchenko", "F", "2001-11-03"),
    ("Mohammed", "Al-Rashid", "M", "1995-07-30"),
]


def _person(i: int) -> mpb.MatchPerson:
    g, family, sex, dob = PEOPLE[i]
    return mpb.MatchPerson(given_name=g, family_name=family, sex=sex, date_of_birth=dob)


def test_a_query_during_a_first_copy_says_so_and_hits_once_the_copy_is_made(
    sim_network: MakeNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_holder, "_INDEX_CHUNK", 1)  # a chunk per record
    net = sim_network()
    gb, ng = net[GB], net[NG]
    rows = [mpb.MatchRecordRow(ref=f"NG-{i}", person=_person(i), line=i + 2) for i in range(3)]
    ng.matching.load(Officer("ng-officer", "officer"), iter([mpb.LoadRecordsRequest(rows=rows)]))
    # NG's index stream stalls after its first chunk, as a large index's would.
    gate, stalled = threading.Event(), threading.Event()
    serve = ng.matching.index

    def stalling(peer: str, req: mpb.MatchIndexRequest) -> Iterator[mpb.MatchIndexChunk]:
        for i, chunk in enumerate(serve(peer, req)):
            if i == 1:  # asked for: the first chunk is stored
                stalled.set()
                gate.wait(30)
            yield chunk

    monkeypatch.setattr(ng.matching, "index", stalling)
    officer = Officer("gb-officer", "officer")
    ask = mpb.MatchQueryRequest(queries=[_person(2)], peers=[NG], timeout_ms=400)
    try:
        making = gb.matching.sync_soon(NG)
        assert stalled.wait(30)
        (pending,) = gb.matching.query(officer, ask)
        assert (pending.peer, pending.result) == (NG, "unavailable")
        assert pending.detail == f"The copy of {NG}'s index is still being made: 1 of 3 records."
    finally:
        gate.set()
    # The copy goes on apart from the query, and the next query finds the record.
    copy = making.result(timeout=30)
    assert (copy.state, copy.records) == (COMPLETE, 3)
    (found,) = gb.matching.query(officer, ask)
    assert (found.result, found.band) == ("hit", "strong")
    gb.matching.stop_syncs()
