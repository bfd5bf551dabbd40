"""Fixtures every test directory may use."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from node.devtools.databases import TEST_PG_ENV, pg_database

# Key files the test process itself writes (identities, officer bundles and CA keys, as
# build_federation makes them) use the cheap Argon2id profile, as the nodes the tests
# start do (keys.keystore); a test that needs the real cost passes KdfParams or removes
# the variable for its subprocess (test_demo_under_load).
os.environ.setdefault("MLAX_KDF_PROFILE", "test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database on the server MLAX_TEST_PG_URL names, dropped after the
    test; the test is skipped when it is not set."""
    base = os.environ.get(TEST_PG_ENV)
    if not base:
        pytest.skip(f"{TEST_PG_ENV} is not set")
    with pg_database(base) as url:
        yield url
