"""`append_many` writes exactly the rows, tree and proofs of `append` called once per
entry, whatever the batches and commits, on SQLite and (when MLAX_TEST_PG_URL is set)
PostgreSQL; there also across two replicas appending in turn."""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import node.storage.ledger as node_ledger
from exchange.ledger import CompactRange, consistency_proof, inclusion_proof, leaf_hash
from exchange.ledger_entry import LedgerEntry, commitment
from node.devtools.databases import TEST_PG_ENV, pg_database
from node.storage.db import Database
from node.storage.ledger import LedgerStore, append, append_many


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'node.db'}"
        return
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set")
    with pg_database(base, "mlax_append_many") as url:
        yield url


@pytest.fixture(scope="module")
def dbs(database_url: str) -> Iterator[tuple[Database, Database]]:
    """Two engines on one database: a node's two replicas."""
    first = Database(database_url)
    first.migrate()
    second = Database(database_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _salt(i: int) -> bytes:
    return hashlib.sha256(b"salt %d" % i).digest()


def _entry(i: int) -> LedgerEntry:
    return LedgerEntry("test.event", 1_700_000_000_000 + i, (("n", str(i)), ("peer", "FR-X")))


def _reset(db: Database) -> None:
    """Back to the empty ledger a migrated database starts with."""
    with db.write() as s:
        for table in ("ledger_entries", "ledger_nodes"):
            s.execute(text(f"DELETE FROM {table}"))  # noqa: S608
        s.execute(
            text("UPDATE ledger_head SET size = 0, frontier = :empty WHERE id = :id"),
            {"empty": b"", "id": node_ledger.HEAD_ID},
        )


def _dump(db: Database) -> dict[str, list[tuple[object, ...]]]:
    with db.read() as s:
        return {
            "entries": [
                tuple(r)
                for r in s.execute(
                    text(
                        "SELECT idx, kind, at, entry, salt, commitment FROM ledger_entries "
                        "ORDER BY idx"
                    )
                )
            ],
            "nodes": [
                tuple(r)
                for r in s.execute(
                    text("SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx")
                )
            ],
            "head": [
                tuple(r) for r in s.execute(text("SELECT id, size, frontier FROM ledger_head"))
            ],
        }


def _expected(n: int) -> tuple[dict[str, list[tuple[object, ...]]], dict[tuple[int, int], bytes]]:
    """The rows one `append` per entry writes, computed without the database."""
    entries: list[tuple[object, ...]] = []
    leaves = []
    for i in range(n):
        data = _entry(i).to_bytes()
        digest = commitment(_salt(i), data)
        entries.append((i, "test.event", _entry(i).at, data, _salt(i), digest))
        leaves.append(leaf_hash(digest))
    tree = CompactRange()
    nodes = sorted(tree.extend(leaves))
    head: list[tuple[object, ...]] = [(node_ledger.HEAD_ID, n, b"".join(tree.frontier))]
    rows: dict[str, list[tuple[object, ...]]] = {
        "entries": entries,
        "nodes": list(nodes),
        "head": head,
    }
    return rows, {(lv, i): h for lv, i, h in nodes}


# Each commit: which replica writes it and its calls, each `append` (None) or
# `append_many` of a batch of that many entries (0 included).
commits = st.lists(
    st.tuples(
        st.sampled_from([0, 1]),
        st.lists(st.one_of(st.none(), st.integers(0, 9)), min_size=1, max_size=4),
    ),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=commits)
def test_append_many_equals_appending_one_by_one(
    dbs: tuple[Database, Database],
    monkeypatch: pytest.MonkeyPatch,
    plan: list[tuple[int, list[int | None]]],
) -> None:
    _reset(dbs[0])
    counter = itertools.count()
    monkeypatch.setattr(node_ledger, "new_salt", lambda: _salt(next(counter)))
    n = 0
    for replica, calls in plan:
        with dbs[replica].write() as s:
            for call in calls:
                if call is None:
                    assert append(s, _entry(n)) == n
                    n += 1
                else:
                    assert append_many(s, [_entry(n + k) for k in range(call)]) == list(
                        range(n, n + call)
                    )
                    n += call
    rows, nodes = _expected(n)
    assert _dump(dbs[0]) == rows
    store = LedgerStore(dbs[1], "origin")
    assert store.size() == n
    for index in {0, n // 2, n - 1} if n else set():
        for size in {index + 1, n}:
            assert store.inclusion_proof(index, size) == (
                rows["entries"][index][5],
                inclusion_proof(index, size, lambda lv, i: nodes[(lv, i)]),
            )
    for old in {1, n // 2, n - 1} if n > 1 else set():
        if 0 < old < n:
            assert store.consistency_proof(old, n) == consistency_proof(
                old, n, lambda lv, i: nodes[(lv, i)]
            )


def test_a_rolled_back_append_leaves_nothing(
    dbs: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction that appends then fails leaves the ledger as it was, and the next
    append (on the same pooled connection) continues from the real head."""
    _reset(dbs[0])
    counter = itertools.count()
    monkeypatch.setattr(node_ledger, "new_salt", lambda: _salt(next(counter)))
    db = dbs[0]
    with db.write() as s:
        append_many(s, [_entry(0), _entry(1)])

    def failing_event() -> None:
        with db.write() as s:
            append_many(s, [_entry(99)] * 3)
            raise RuntimeError("the event failed")

    with pytest.raises(RuntimeError):
        failing_event()
    counter = itertools.count(2)
    with db.write() as s:
        assert append_many(s, [_entry(2), _entry(3), _entry(4)]) == [2, 3, 4]
    assert _dump(db) == _expected(5)[0]


def test_replicas_appending_at_once_keep_indexes_dense(dbs: tuple[Database, Database]) -> None:
    """Two replicas appending concurrently: every index once, and the stored tree is the
    tree of the stored commitments."""
    import threading

    _reset(dbs[0])
    with dbs[0].write() as s:
        append(s, _entry(0))
    errors: list[BaseException] = []

    def work(db: Database, offset: int) -> None:
        try:
            for k in range(40):
                with db.write() as s:
                    if k % 3:
                        append(s, _entry(offset + k))
                    else:
                        append_many(s, [_entry(offset + k), _entry(offset + k)])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(db, 1000 * n)) for n, db in enumerate(dbs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = _dump(dbs[0])
    n = len(rows["entries"])
    assert n == 1 + 2 * (40 + 14)
    assert [r[0] for r in rows["entries"]] == list(range(n))
    tree = CompactRange()
    leaves = [leaf_hash(bytes(r[5])) for r in rows["entries"]]  # type: ignore[call-overload]
    assert rows["nodes"] == sorted(tree.extend(leaves))
    assert rows["head"] == [(node_ledger.HEAD_ID, n, b"".join(tree.frontier))]
