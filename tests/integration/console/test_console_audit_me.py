"""The console's Audit and Who-am-I pages against the live federation.

An auditor sees their node's ledger verified, downloads its export and has the console
verify the file: intact it is OK, with one byte of an entry flipped the first problem is
named with its index, and a file that is not an export is refused. Who-am-I shows what
the node knows of the officer and when the credential's certificates run out.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
import io
import re
import time
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from starlette.testclient import TestClient

from exchange._proto.mlax.v1.ledger_pb2 import LedgerExportRecord
from exchange.ledger.export import encode_record, iter_records

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

OK = "OK: every entry, checkpoint and cosignature verifies"
_ENTRIES = re.compile(r'id="ledger-entries">([\d,]+)')
_LATEST = re.compile(r'id="latest-checkpoint">covers ([\d,]+) entries')
_RESULT = re.compile(r'id="verify-result">(.*?)</p>', re.S)


def _number(pattern: re.Pattern[str], page: str) -> int:
    found = pattern.search(page)
    return int(found.group(1).replace(",", "")) if found else 0


def _result(page: str) -> str:
    found = _RESULT.search(page)
    assert found, page
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))


def _signed_ledger(client: TestClient) -> str:
    """The audit page once a checkpoint signs some entries (one every 2 s on these nodes):
    the page shows its last check, so the auditor asks for a new one until then (each is
    an export, itself ledgered, so the ledger is never empty)."""
    deadline = time.monotonic() + 30
    page = client.get("/audit")
    while True:
        assert page.status_code == 200, page.text
        if _number(_LATEST, page.text) > 0 or time.monotonic() > deadline:
            return page.text
        time.sleep(0.5)
        token = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
        assert token
        page = client.post("/audit/check", data={"csrf": token.group(1)}, follow_redirects=True)


def _export(client: TestClient, token: str) -> bytes:
    response = client.post("/audit/export", data={"csrf": token})
    assert response.status_code == 200, response.text
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="GB-NCA-ledger-')
    assert disposition.endswith('.export"')
    return response.content


def _verify(client: TestClient, token: str, data: bytes) -> Any:
    return client.post(
        "/audit/verify",
        data={"csrf": token},
        files={"export": ("gb.export", data, "application/octet-stream")},
    )


def _records(data: bytes) -> list[LedgerExportRecord]:
    return list(iter_records(io.BytesIO(data).read))


def _encode(records: list[LedgerExportRecord]) -> bytes:
    return b"".join(encode_record(r) for r in records)


def test_an_auditor_sees_the_ledger_verified(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    page = _signed_ledger(client)
    assert "<h1>Audit</h1>" in page
    assert _result(page) == OK
    assert _number(_ENTRIES, page) > 0
    assert _number(_LATEST, page) > 0
    assert 'id="cosigners"' in page
    assert '<label for="f-export">Export file</label>' in page
    assert ">Verify</button>" in page


@pytest.mark.parametrize("role", ["officer", "supervisor"])
def test_other_roles_are_refused_the_audit(console_for: Any, csrf: Any, role: str) -> None:
    client, _ = console_for("GB-NCA", role)
    page = client.get("/audit")
    assert page.status_code == 403
    assert "The ledger audit is for auditors" in page.text
    assert 'href="/audit"' not in page.text  # not in the navigation either
    token = csrf(client)
    assert client.post("/audit/export", data={"csrf": token}).status_code == 403
    assert _verify(client, token, b"anything").status_code == 403


def test_a_downloaded_export_verifies(console_for: Any, csrf: Any) -> None:
    client, console = console_for("GB-NCA", "auditor")
    _signed_ledger(client)
    data = _export(client, csrf(client))
    records = _records(data)
    assert records[0].header.agency == "GB-NCA"
    assert any(r.HasField("checkpoint") for r in records)
    page = _verify(client, csrf(client), data)
    assert page.status_code == 200, page.text
    assert "<h1>Export file verified</h1>" in page.text
    assert _result(page.text) == OK
    assert _number(_ENTRIES, page.text) == sum(r.HasField("entry") for r in records)
    # The console kept no copy of the file.
    assert list(console.work_dir.iterdir()) == []


def test_an_export_verifies_against_a_trusted_directory(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    _signed_ledger(client)
    data = _export(client, csrf(client))
    page = client.post(
        "/audit/verify",
        data={"csrf": csrf(client)},
        files={
            "export": ("gb.export", data, "application/octet-stream"),
            "trusted": ("directory.json", live.fed.directory_file.read_bytes(), "text/plain"),
        },
    )
    assert page.status_code == 200, page.text
    assert _result(page.text) == OK
    assert "against the directory you trust" in page.text
    assert "checked against itself only" not in page.text
    page = client.post(
        "/audit/verify",
        data={"csrf": csrf(client)},
        files={"export": ("gb.export", data), "trusted": ("directory.json", b"{not json")},
    )
    assert page.status_code == 400
    assert "The trusted directory file cannot be read" in page.text


def test_a_flipped_byte_is_located(console_for: Any, csrf: Any) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    _signed_ledger(client)
    records = _records(_export(client, csrf(client)))
    entries = [r for r in records if r.HasField("entry") and r.entry.entry]
    target = entries[len(entries) // 2].entry
    content = bytearray(target.entry)
    content[len(content) // 2] ^= 0x01
    target.entry = bytes(content)
    page = _verify(client, csrf(client), _encode(records))
    assert page.status_code == 200, page.text
    index = target.index
    assert _result(page.text) == (
        f"FAILED. First problem: index {index}: modified — entry {index} was modified: "
        "its content does not match its commitment"
    )


def test_what_an_export_says_is_shown_as_text(console_for: Any, csrf: Any) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    _signed_ledger(client)
    records = _records(_export(client, csrf(client)))
    records[0].header.origin = "<b>forged</b>\u202e"
    page = _verify(client, csrf(client), _encode(records))
    assert page.status_code == 200, page.text
    assert "<b>forged" not in page.text
    assert "&lt;b&gt;forged&lt;/b&gt;" in page.text
    assert "\u202e" not in page.text
    assert _result(page.text).startswith("FAILED. First problem: header — ")


def test_a_file_that_is_not_an_export_is_refused(console_for: Any, csrf: Any) -> None:
    client, console = console_for("GB-NCA", "auditor")
    token = csrf(client)
    page = _verify(client, token, b"\x00 this is not a ledger export at all" * 50)
    assert page.status_code == 400
    assert "This file is not a ledger export" in page.text
    assert list(console.work_dir.iterdir()) == []
    page = client.post("/audit/verify", data={"csrf": token}, files={"other": ("x", b"")})
    assert page.status_code == 400
    assert "Choose an export file to verify." in page.text


@pytest.mark.parametrize("role", ["officer", "auditor"])
def test_who_am_i(console_for: Any, role: str) -> None:
    client, console = console_for("FR-OCRTEH", role)
    page = client.get("/me")
    assert page.status_code == 200, page.text
    text = page.text
    assert '<dd id="me-agency">FR-OCRTEH</dd>' in text
    assert f'<dd id="me-role">{role}</dd>' in text
    assert "GB-NCA, NG-NAPTIP" in text  # the peers
    assert console.client.credential.endpoint in text
    assert "Your officer certificate</dt>" in text
    assert "Your node&#39;s TLS certificate</dt>" in text
    assert text.count("valid until ") == 2
    assert 'class="notice"' not in text  # the federation's certificates are fresh


def _certificate(not_after: datetime.datetime) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - datetime.timedelta(days=400))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(Encoding.PEM)


def test_who_am_i_warns_of_expiring_certificates(console_for: Any) -> None:
    client, console = console_for("GB-NCA", "officer")
    now = datetime.datetime.now(datetime.UTC)
    # The page reads the credential's certificates; the connection already made is kept.
    console.client.credential = dataclasses.replace(
        console.client.credential,
        certificate=_certificate(now + datetime.timedelta(days=5, hours=1)),
        server_certificate=_certificate(now - datetime.timedelta(days=1)),
    )
    text = client.get("/me").text
    assert re.search(r'class="notice"[^>]*>Your officer certificate expires in 5 days', text)
    assert re.search(r'class="notice"[^>]*>Your node&#39;s TLS certificate EXPIRED', text)


def test_the_audit_page_shows_the_last_check_until_asked_again(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for("GB-NCA", "auditor")
    exports = lambda: sum(1 for kind, _ in live.ledger_kinds("GB-NCA") if kind == "ledger.exported")  # noqa: E731
    first = client.get("/audit")
    assert first.status_code == 200
    after_first = exports()
    again = client.get("/audit")
    assert "Check the ledger again" in again.text
    # Showing the page again exports nothing: the node's ledger did not grow.
    assert exports() == after_first
    checked = client.post(
        "/audit/check", data={"csrf": csrf(client, "/audit")}, follow_redirects=True
    )
    assert checked.status_code == 200
    assert "Checked again: OK." in checked.text
    assert exports() == after_first + 1
