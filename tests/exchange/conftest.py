"""Fixtures: a small federation of three agencies, signed 2 of 3 by three administrators."""

from __future__ import annotations

import pytest
from factories import FederationSimulator, SimAgency

from exchange.directory import Directory

SENDER_ID = "FR-OCRTEH"
X25519_ID = "DE-BKA"
HYBRID_ID = "NL-POLITIE"


def build_federation() -> FederationSimulator:
    fed = FederationSimulator()
    fed.add_agency(SENDER_ID)
    fed.add_agency(X25519_ID)
    fed.add_agency(HYBRID_ID, hybrid=True)
    return fed


@pytest.fixture
def federation() -> FederationSimulator:
    """A fresh federation per test, so tests may add keys, revoke and re-publish."""
    return build_federation()


@pytest.fixture
def sender(federation: FederationSimulator) -> SimAgency:
    return federation.agencies[SENDER_ID]


@pytest.fixture
def receiver(federation: FederationSimulator) -> SimAgency:
    """A recipient whose card offers only an X25519 key."""
    return federation.agencies[X25519_ID]


@pytest.fixture
def pq_receiver(federation: FederationSimulator) -> SimAgency:
    """A recipient whose card offers the hybrid MLKEM768-X25519 key."""
    return federation.agencies[HYBRID_ID]


@pytest.fixture
def directory(federation: FederationSimulator) -> Directory:
    return federation.directory()
