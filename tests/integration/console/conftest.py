"""Consoles on the shared live federation, driven in process with Starlette's TestClient.

`console_for(agency, role)` builds a Console on that officer's real credential (the SDK
talks to the real node over mTLS), signs in through its one-time login URL as a browser
would, and returns the signed-in client and the console. `csrf_of(client)` reads the
session's CSRF token from a page, as the page's own forms carry it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from node.client import OfficerClient
from node.console.app import Console, ConsoleSettings

BASE = "http://127.0.0.1:8780"
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

ConsoleFor = Callable[..., tuple[TestClient, Console]]


def csrf_of(client: TestClient, page: str = "/me") -> str:
    found = _CSRF.search(client.get(page).text)
    assert found, "a signed-in page carries the session's CSRF token"
    return found.group(1)


def sign_in(client: TestClient, console: Console) -> None:
    page = client.get(console.login_url(), follow_redirects=False)
    assert page.status_code == 303, page.text


@pytest.fixture
def console_for(live: Any, tmp_path: Path) -> Iterator[ConsoleFor]:
    made: list[tuple[TestClient, Console]] = []

    def make(
        agency: str, role: str = "officer", credential: Path | None = None, **settings: object
    ) -> tuple[TestClient, Console]:
        officer = OfficerClient.from_bundle(
            credential or live.credential(agency, role), live.officer_passphrase, timeout=20
        )
        console = Console(
            officer,
            ConsoleSettings(port=8780, work_dir=tmp_path / f"console-{len(made)}", **settings),  # type: ignore[arg-type]
            announce=lambda url: None,
        )
        client = TestClient(console.build(), base_url=BASE)
        sign_in(client, console)
        made.append((client, console))
        return client, console

    yield make
    for client, console in made:
        client.close()
        console.close()
        console.client.close()


@pytest.fixture
def csrf() -> Callable[[TestClient], str]:
    """`csrf(client)`: the session's CSRF token, read from a page as its forms carry it."""
    return csrf_of
