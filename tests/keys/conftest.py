"""Fixtures for key lifecycle tests: cheap Argon2id, and identities created on demand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from exchange.agency import AgencyCard
from keys.identity import create_identity
from keys.keystore import KDF_PROFILE_ENV, TEST_KDF

PASSPHRASE = b"correct horse battery staple"


@pytest.fixture(autouse=True)
def cheap_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    """Key files written without an explicit KdfParams use the test profile."""
    monkeypatch.setenv(KDF_PROFILE_ENV, "test")


@pytest.fixture
def passphrase() -> bytes:
    return PASSPHRASE


@pytest.fixture
def make_identity(tmp_path: Path) -> Callable[..., tuple[Path, AgencyCard]]:
    """Create an agency identity under tmp_path; returns its directory and card."""

    def make(
        agency_id: str = "GB-NCA",
        endpoint: str = "node.gb.example:7443",
        **kwargs: object,
    ) -> tuple[Path, AgencyCard]:
        directory = tmp_path / agency_id
        card = create_identity(
            directory,
            agency_id=agency_id,
            name=f"Agency {agency_id}",
            endpoint=endpoint,
            passphrase=PASSPHRASE,
            kdf=TEST_KDF,
            **kwargs,  # type: ignore[arg-type]
        )
        return directory, card

    return make
