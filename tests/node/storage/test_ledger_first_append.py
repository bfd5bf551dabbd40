"""Two replicas of one node (two engines on one PostgreSQL database) appending the very
first ledger entries at once: both commit, every index once, one tree. The second
replica's append starts while the first one's is still uncommitted, and the first
commits only once the second waits on a lock, so the race is run, not left to chance."""

from __future__ import annotations

import threading
import time

from sqlalchemy import text

import node.storage.ledger as node_ledger
from exchange.ledger import CompactRange, leaf_hash
from exchange.ledger_entry import LedgerEntry
from node.storage.db import Database
from node.storage.ledger import LedgerStore, append, append_many

# How long the first replica waits for the second to block before it commits anyway
# (the test then fails on its own assertion, not by hanging).
_WAIT_S = 30.0


def _entry(i: int) -> LedgerEntry:
    return LedgerEntry("test.event", 1_700_000_000_000 + i, (("n", str(i)),))


def _lock_waiters(url: str) -> int:
    """Sessions on the test database waiting for a lock another transaction holds."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_replicas_appending_the_first_entries_at_once_build_one_tree(pg_url: str) -> None:
    first, second = Database(pg_url), Database(pg_url)
    first.migrate()
    first_appended = threading.Event()
    errors: list[BaseException] = []
    second_got: list[int] = []

    def second_replica() -> None:
        first_appended.wait(_WAIT_S)
        try:
            with second.write() as s:
                second_got.extend(append_many(s, [_entry(1), _entry(2)]))
        except BaseException as e:  # reported by the assertions below
            errors.append(e)

    thread = threading.Thread(target=second_replica)
    thread.start()
    try:
        with first.write() as s:
            assert append(s, _entry(0)) == 0
            first_appended.set()
            deadline = time.monotonic() + _WAIT_S
            while not _lock_waiters(pg_url) and time.monotonic() < deadline:
                time.sleep(0.01)
            blocked = _lock_waiters(pg_url)
        thread.join(_WAIT_S)
        assert blocked == 1, "the second replica never waited for the first one's append"
        assert errors == []
        assert second_got == [1, 2]
        with first.read() as s:
            commitments = [
                bytes(c)
                for (c,) in s.execute(text("SELECT commitment FROM ledger_entries ORDER BY idx"))
            ]
            idx = [i for (i,) in s.execute(text("SELECT idx FROM ledger_entries ORDER BY idx"))]
            nodes = [
                (lv, i, bytes(h))
                for lv, i, h in s.execute(
                    text("SELECT level, idx, hash FROM ledger_nodes ORDER BY level, idx")
                )
            ]
            head = s.execute(
                text("SELECT size, frontier FROM ledger_head WHERE id = :id"),
                {"id": node_ledger.HEAD_ID},
            ).one()
        assert idx == [0, 1, 2]
        tree = CompactRange()
        assert nodes == sorted(tree.extend([leaf_hash(c) for c in commitments]))
        assert (head[0], bytes(head[1])) == (3, b"".join(tree.frontier))
        assert LedgerStore(second, "origin").size() == 3
    finally:
        first_appended.set()
        thread.join(_WAIT_S)
        first.close()
        second.close()
