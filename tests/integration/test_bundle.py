"""Non-repudiation: the recipient exports the sender's signed statement, and a third
party with nothing but the federation directory verifies who sent which plaintext."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]


def test_recipient_exports_a_bundle_a_third_party_verifies(
    live: LiveFederation, tmp_path: Path
) -> None:
    gb = live.client("GB-NCA")
    sent = gb.send(
        "FR-OCRTEH",
        subject="Formal request 2026/17",
        text="We request the production of records of account 0042.",
        message_type="note",
        case_ref="GB-2026-0017",
    )
    live.wait_delivered(gb, sent.message_id)
    cred = live.credential("FR-OCRTEH")
    bundle = tmp_path / "statement.bundle"
    shown = live.cli.run("show", sent.message_id, "--as", cred, "--bundle-out", bundle)
    assert shown.returncode == 0, shown.stderr
    assert bundle.stat().st_mode & 0o777 == 0o600

    directory = live.fed.directory_file
    doc = live.cli.json("bundle", "verify", bundle, "--directory", directory, "--json")
    assert doc["verified"] is True
    assert doc["sender"] == "GB-NCA"
    assert doc["recipient"] == "FR-OCRTEH"
    assert doc["message_id"] == sent.message_id
    assert doc["text"] == "We request the production of records of account 0042."

    # Altering one byte of the statement breaks it: the sender never said that.
    data = bytearray(bundle.read_bytes())
    pos = data.index(b"0042")
    data[pos : pos + 4] = b"9999"
    forged = tmp_path / "forged.bundle"
    forged.write_bytes(bytes(data))
    refused = live.cli.run("bundle", "verify", forged, "--directory", directory)
    message = live.cli.refusal(refused)
    assert "signature" in message

    # The sender's own outbound copy has no bundle: only a recipient holds one.
    own = live.cli.run(
        "show",
        sent.message_id,
        "--as",
        live.credential("GB-NCA"),
        "--bundle-out",
        tmp_path / "own.bundle",
    )
    assert live.cli.refusal(own).startswith("Only inbound messages")
