"""Evidence through the console: an upload followed to the node, a download whose digest
is checked and shown and whose file is handed over once, an upload interrupted by a
dropped connection and resumed, and what an upload request may not be."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import time
import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from exchange import forms
from exchange.encoding import now_ms
from node.client.cases import CaseClient
from node.devtools.balancer import TcpBalancer
from node.devtools.federation import free_port

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, NG = "GB-NCA", "NG-NAPTIP"
FORMS = Path(__file__).resolve().parents[3] / "deploy" / "forms"
JSON = {"Accept": "application/json"}


def _submitted(live: Any) -> str:
    gb = CaseClient(live.client(GB))
    data = tomllib.loads((FORMS / "mla-request.toml").read_text())
    data["requested_authority"] = {"agency_id": NG, "name": NG}
    ref = gb.create(forms.form_from_mapping(forms.CaseType.MLA, data, now_ms=now_ms()))
    case_ref = ref.summary.case_ref
    gb.act(case_ref, "submit")
    CaseClient(live.client(GB, "supervisor")).approve(case_ref)
    ng = CaseClient(live.client(NG))
    live.wait_for(lambda: ng.get(case_ref).summary.state == "submitted", 30, "the case arrives")
    return case_ref


def _headers(token: str, name: str, description: str = "") -> dict[str, str]:
    return {
        **JSON,
        "X-CSRF-Token": token,
        "Content-Type": "application/octet-stream",
        "X-File-Name": urllib.parse.quote(name),
        "X-Description": urllib.parse.quote(description),
    }


def _follow(client: Any, job: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/transfers/{job}", headers=JSON).json()
        if status["state"] in ("done", "failed", "interrupted"):
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def test_upload_then_download_with_the_digest_shown(console_for: Any, csrf: Any, live: Any) -> None:
    ref = _submitted(live)
    gb, gb_console = console_for(GB, "officer")
    data = os.urandom(700_000)
    name = "bank statements \u0161 2026.pdf"
    started = gb.post(
        f"/cases/{ref}/evidence",
        content=data,
        headers=_headers(csrf(gb), name, "Statements of account 4471"),
    )
    assert started.status_code == 202, started.text
    done = _follow(gb, started.json()["job"])
    assert done["state"] == "done", done
    assert done["done"] == len(data)
    page = gb.get(f"/cases/{ref}")
    assert f"Uploaded {name} to case {ref}" in page.text
    assert name in page.text
    assert hashlib.sha256(data).hexdigest() in page.text
    # The console keeps no copy once the node has the file.
    assert list(gb_console.work_dir.iterdir()) == []

    ng, ng_console = console_for(NG, "officer")
    attachment = done["attachment_id"]
    ng_cases = CaseClient(live.client(NG))
    live.wait_for(
        lambda: any(
            a.attachment_id == attachment and a.state == "available"
            for a in ng_cases.get(ref).attachments
        ),
        60,
        "the file reaches Nigeria",
    )
    fetch = ng.post(
        f"/cases/{ref}/files/{attachment}/download", headers={**JSON, "X-CSRF-Token": csrf(ng)}
    )
    assert fetch.status_code == 202, fetch.text
    fetched = _follow(ng, fetch.json()["job"])
    assert fetched["state"] == "done", fetched
    assert fetched["sha256"] == hashlib.sha256(data).hexdigest()
    saved = ng.get(f"/transfers/{fetched['job']}/file")
    assert saved.status_code == 200
    assert saved.content == data
    assert saved.headers["content-disposition"].startswith("attachment;")
    # Handed over once; then gone from the console's disk.
    assert ng.get(f"/transfers/{fetched['job']}/file").status_code == 409
    assert list(ng_console.work_dir.iterdir()) == []


class _SlowProxy(TcpBalancer):
    """A TCP forwarder that moves at most 64 KiB every 20 ms, so an upload is still under
    way when the test cuts the connection."""

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                time.sleep(0.02)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


def test_an_upload_cut_off_is_resumed_from_where_the_node_got(
    console_for: Any, csrf: Any, live: Any
) -> None:
    ref = _submitted(live)
    gb, gb_console = console_for(GB, "officer")
    gb_console.cases.retries = 1
    gb_console.cases.retry_wait = 0.1
    node_port = int(gb_console.client.credential.endpoint.rsplit(":", 1)[1])
    port = free_port()
    proxy = _SlowProxy(port, [("127.0.0.1", node_port)]).__enter__()
    gb_console.client.retarget(f"127.0.0.1:{port}")
    data = os.urandom(6 * 1024 * 1024)
    started = gb.post(
        f"/cases/{ref}/evidence", content=data, headers=_headers(csrf(gb), "ledger.xlsx")
    )
    assert started.status_code == 202, started.text
    job = started.json()["job"]
    deadline = time.monotonic() + 60
    while gb.get(f"/transfers/{job}", headers=JSON).json()["done"] < 2 * 1024 * 1024:
        assert time.monotonic() < deadline, "the upload did not get under way"
        time.sleep(0.05)
    proxy.__exit__(None, None, None)  # the connection drops mid-file
    cut = _follow(gb, job)
    assert cut["state"] == "interrupted", cut
    assert cut["error"]
    # The page offers Resume (the script's button) and the console keeps the file for it.
    assert any(gb_console.work_dir.iterdir())
    # Back to the SDK's own patience: the channel may wait out a reconnect backoff first.
    gb_console.cases.retries, gb_console.cases.retry_wait = 5, 0.5
    with TcpBalancer(port, [("127.0.0.1", node_port)]):
        resumed = gb.post(f"/transfers/{job}/resume", headers={**JSON, "X-CSRF-Token": csrf(gb)})
        assert resumed.status_code == 202, resumed.text
        done = _follow(gb, job)
        assert done["state"] == "done", done["error"]
        assert done["done"] == len(data)
    gb_console.client.retarget(live.client(GB).credential.endpoint)
    files = {a.attachment_id: a for a in CaseClient(live.client(GB)).get(ref).attachments}
    assert files[done["attachment_id"]].sha256 == hashlib.sha256(data).digest()
    assert files[done["attachment_id"]].size == len(data)
    # Only an interrupted upload resumes.
    again = gb.post(f"/transfers/{job}/resume", headers={**JSON, "X-CSRF-Token": csrf(gb)})
    assert again.status_code == 409


def test_what_an_upload_may_not_be(console_for: Any, csrf: Any, live: Any) -> None:
    ref = _submitted(live)
    gb, _ = console_for(GB, "officer", max_upload_bytes=1024)
    token = csrf(gb)
    before = len(CaseClient(live.client(GB)).get(ref).attachments)
    nameless = gb.post(f"/cases/{ref}/evidence", content=b"x", headers=_headers(token, ""))
    assert nameless.status_code == 400
    assert "needs a name" in nameless.text
    empty = gb.post(f"/cases/{ref}/evidence", content=b"", headers=_headers(token, "a.pdf"))
    assert empty.status_code == 400
    assert "empty" in empty.text
    control = gb.post(
        f"/cases/{ref}/evidence", content=b"x", headers=_headers(token, "a\x1b[2J.pdf")
    )
    assert control.status_code == 400
    big = gb.post(f"/cases/{ref}/evidence", content=b"x" * 2048, headers=_headers(token, "b.pdf"))
    assert big.status_code == 413
    forged = gb.post(f"/cases/{ref}/evidence", content=b"x", headers=_headers("forged", "c.pdf"))
    assert forged.status_code == 403
    auditor, _ = console_for(GB, "auditor")
    refused = auditor.post(
        f"/cases/{ref}/evidence", content=b"x", headers=_headers(csrf(auditor), "d.pdf")
    )
    assert refused.status_code == 403
    assert len(CaseClient(live.client(GB)).get(ref).attachments) == before
