"""A holder peer cannot make the querier's copy of its index grow without bound
(node/services/match_replica.py): records re-sent over and over in streams it cuts off,
copies abandoned one after another by resets, values skewed into one part, or one value
carried by every record. Each case was a proven attack on the querier's disk or memory."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from exchange.errors import MlaxError
from exchange.matching.tokens import MAX_TOKENS
from node.services import match_replica
from node.services.match_replica import BUILDING, Entry, ReplicaStore
from node.storage.db import Database
from node.storage.models import Base, MatchCopyRecordRow, MatchCopyRow

PEER = "NG-NAPTIP"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ReplicaStore]:
    db = Database(f"sqlite:///{tmp_path / 'node.db'}")
    Base.metadata.create_all(db.engine)
    yield ReplicaStore(db)
    db.close()


def _values(rng: random.Random, first: int | None = None) -> list[int]:
    """48 distinct signed 64-bit values; with `first`, all in the part of that first byte."""
    out: set[int] = set()
    while len(out) < MAX_TOKENS:
        v = rng.getrandbits(64)
        if first is not None:
            v = (first << 56) | (v & ((1 << 56) - 1))
        out.add(int.from_bytes(v.to_bytes(8, "big"), "big", signed=True))
    return sorted(out)


def _entry(handle: int, values: list[int], version: int) -> Entry:
    packed = b"".join(v.to_bytes(8, "big", signed=True) for v in sorted(values))
    return Entry(handle.to_bytes(16, "big"), False, packed, version)


def _stored_entries(store: ReplicaStore, copy_no: int) -> int:
    return store.size(copy_no)["entry_bytes"] // match_replica.ENTRY


def test_records_resent_in_cut_off_streams_do_not_fill_the_disk(
    store: ReplicaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_replica, "DEAD_SLACK", 200)
    rng = random.Random(1)
    copy = store.stage(PEER, "k1", target=10**6)
    latest: dict[int, list[int]] = {}
    for version in range(1, 41):  # 40 chunks re-sending the same 50 records, never finished
        batch = {h: _values(rng) for h in range(50)}
        latest |= batch
        now = store.apply(copy.copy_no, [_entry(h, v, version) for h, v in batch.items()], 10**6)
        assert now.records == 50
        # never more than the live entries, the slack and one chunk's worth
        assert _stored_entries(store, copy.copy_no) <= (50 + 200 + 50) * MAX_TOKENS
    # Without the bound 40 x 50 x 48 = 96,000 entries would be stored.
    assert _stored_entries(store, copy.copy_no) < 40 * 50 * MAX_TOKENS // 4
    # What is kept is what the holder sent last: the latest values are found, no older one.
    found = store.lookup(copy.copy_no, [latest[7][0]])
    assert found == {latest[7][0]: [(7).to_bytes(16, "big")]}


def test_copies_abandoned_by_reset_after_reset_are_deleted(store: ReplicaStore) -> None:
    rng = random.Random(2)
    for attempt in range(6):  # each time: a reset, some records, then the stream is cut
        copy = store.stage(PEER, f"k{attempt}", target=10)
        store.apply(copy.copy_no, [_entry(h, _values(rng), 1) for h in range(30)], 10)
    with store.db.read() as s:
        states = s.scalars(select(MatchCopyRow.state)).all()
        records = s.scalar(select(func.count()).select_from(MatchCopyRecordRow))
    assert states == [BUILDING]  # the five earlier copies are gone, not "dropping"
    assert records == 30


def test_values_skewed_into_one_part_are_refused(
    store: ReplicaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_replica, "PART_SLACK", 500)
    rng = random.Random(3)
    copy = store.stage(PEER, "k1", target=1)
    spread = [_entry(h, _values(rng), 1) for h in range(100)]
    assert store.apply(copy.copy_no, spread, 1).records == 100  # uniform: accepted
    skewed = [_entry(1000 + h, _values(rng, first=0x17), 1) for h in range(100)]
    with pytest.raises(MlaxError, match="not spread as OPRF outputs are"):
        store.apply(copy.copy_no, skewed, 1)
    _, making = store.copies(PEER)
    assert making is not None
    assert making.records == 100  # the refused chunk changed nothing


def test_a_value_every_record_carries_is_never_a_match(
    store: ReplicaStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(match_replica, "MAX_VALUE_RECORDS", 5)
    rng = random.Random(4)
    common = _values(rng)[0]
    records = {h: [common, *_values(rng)[1:]] for h in range(12)}
    copy = store.stage(PEER, "k1", target=1)
    store.apply(copy.copy_no, [_entry(h, v, 1) for h, v in records.items()], 1)
    own = records[3][1] if records[3][0] == common else records[3][0]
    assert store.lookup(copy.copy_no, [common]) == {}  # in the deltas: not answered
    done = store.finish(copy.copy_no, 1)
    assert store.lookup(done.copy_no, [common]) == {}  # compacted: dropped
    assert store.lookup(done.copy_no, [own]) == {own: [(3).to_bytes(16, "big")]}
    # 12 records x 48 entries, less the 12 entries of the common value
    assert _stored_entries(store, done.copy_no) == 12 * (MAX_TOKENS - 1)
