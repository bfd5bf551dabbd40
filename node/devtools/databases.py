"""Throwaway PostgreSQL databases for tests and benchmarks: one server, a database each.

Tests that need PostgreSQL read the server's URL from `MLAX_TEST_PG_URL`
(`postgresql+psycopg://USER@HOST:PORT/DB`) and skip without it; each creates databases
of its own and drops them afterwards, so runs never share state.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

TEST_PG_ENV = "MLAX_TEST_PG_URL"


@contextmanager
def pg_databases(base_url: str, names: Sequence[str]) -> Iterator[dict[str, str]]:
    """Create a database per name on the server `base_url` names (a leftover of the same
    name is dropped first); yield each name's SQLAlchemy URL; drop them all afterwards."""
    import psycopg

    plain = base_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    head = base_url.rpartition("/")[0]
    try:
        yield {name: f"{head}/{name}" for name in names}
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def pg_database(base_url: str, prefix: str = "mlax_test") -> Iterator[str]:
    """One fresh database, `<prefix>_<8 random hex digits>`; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with pg_databases(base_url, [name]) as urls:
        yield urls[name]
