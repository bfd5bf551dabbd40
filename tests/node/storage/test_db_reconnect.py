"""A node whose PostgreSQL ends its sessions (a restart, `pg_terminate_backend`) carries
on by itself: the next transactions get new connections and succeed, without the pool
spending a round trip per checkout to find out."""

from __future__ import annotations

from sqlalchemy import text

from node.storage.db import Database


def _end_sessions(url: str) -> int:
    """End every other session on the test database, as a server restart does."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_transactions_after_the_server_ended_every_session_succeed(pg_url: str) -> None:
    db = Database(pg_url, pool_size=3)
    try:
        with db.write() as s:
            s.execute(text("CREATE TABLE t (n integer)"))
        # Three pooled connections, all idle when their sessions end.
        sessions = [db.engine.connect() for _ in range(3)]
        for conn in sessions:
            conn.execute(text("SELECT 1"))
        for conn in sessions:
            conn.close()
        assert _end_sessions(pg_url) == 3
        for n in range(5):
            with db.write() as s:
                s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
        with db.read() as s:
            assert s.execute(text("SELECT count(*) FROM t")).scalar_one() == 5
    finally:
        db.close()
