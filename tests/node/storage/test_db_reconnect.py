"""A node whose PostgreSQL ends its sessions (a restart, `pg_terminate_backend`) carries
on by itself: the next transactions get new connections and succeed, without the pool
spending a round trip per checkout to find out."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from node.storage.db import Database


@pytest.fixture
def pg_url() -> Iterator[str]:
    base = os.environ.get("MLAX_TEST_PG_URL")
    if not base:
        pytest.skip("MLAX_TEST_PG_URL is not set")
    import psycopg

    name = f"mlax_reconnect_{uuid.uuid4().hex[:8]}"
    plain = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base.rpartition('/')[0]}/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _end_sessions(url: str) -> int:
    """End every session on the test database, as a server restart does."""
    import psycopg

    plain = url.replace("postgresql+psycopg://", "postgresql://")
    name = plain.rpartition("/")[2]
    admin = f"{plain.rpartition('/')[0]}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
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
