"""What the console refuses: requests without a session or CSRF token, other sites, other
Host names, oversized bodies, a spent login link, a session replayed after logout; and
what it shows: peer and user text escaped, control and bidi characters made visible."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from node.client.cases import CaseClient

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

BASE = "http://127.0.0.1:8780"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>\u202eevil\x1b[2J'
MLA = {
    "_type": "mla",
    "_recipient": "FR-OCRTEH",
    "legal_basis#n": "1",
    "legal_basis[0].instrument": "untoc-art18",
    "offences#n": "1",
    "offences[0].description": "Human trafficking.",
    "offences[0].legal_provision": "Modern Slavery Act 2015, s. 2",
    "offences[0].maximum_penalty": "Life imprisonment",
    "summary_of_facts": "Facts.",
    "assistance_sought": "banking-records",
    "urgency": "ordinary",
    "contact_officer.name": "DS Marsh",
    "contact_officer.email": "marsh@nca.example",
    "requesting_authority.agency_id": "GB-NCA",
    "requesting_authority.name": "GB-NCA",
    "language": "en",
}


def _count(live: Any) -> int:
    return len(CaseClient(live.client("GB-NCA")).cases(limit=1000))


def test_pages_need_a_session(console_for: Any) -> None:
    _, console = console_for("GB-NCA", "officer")
    stranger = TestClient(console.build(), base_url=BASE)
    page = stranger.get("/cases")
    assert page.status_code == 401
    assert "login link" in page.text
    assert "<table" not in page.text
    assert stranger.post("/cases/new", data=MLA).status_code == 401


def test_a_login_link_works_once(console_for: Any) -> None:
    _, console = console_for("GB-NCA", "officer")
    url = console.login_url()
    first = TestClient(console.build(), base_url=BASE)
    assert first.get(url, follow_redirects=False).status_code == 303
    cookie = first.cookies.get(console.cookie_name)
    assert cookie
    second = TestClient(console.build(), base_url=BASE)
    again = second.get(url, follow_redirects=False)
    assert again.status_code == 401
    assert "not valid" in again.text
    assert console.cookie_name not in second.cookies


def test_session_cookie_flags(console_for: Any) -> None:
    _, console = console_for("GB-NCA", "officer")
    fresh = TestClient(console.build(), base_url=BASE)
    answer = fresh.get(console.login_url(), follow_redirects=False)
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith("mlax_console_8780=")
    for flag in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert flag.lower() in cookie.lower(), cookie
    # The token is spent: the redirect goes to a page without it.
    assert "token" not in answer.headers["location"]


def test_state_changes_need_the_csrf_token(console_for: Any, csrf: Any, live: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    before = _count(live)
    missing = client.post("/cases/new", data=MLA)
    assert missing.status_code == 403
    assert "did not come from this console" in missing.text
    forged = client.post("/cases/new", data={**MLA, "csrf": "forged"})
    assert forged.status_code == 403
    token = csrf(client)
    other_site = client.post(
        "/cases/new", data={**MLA, "csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert other_site.status_code == 403
    assert "another site" in other_site.text
    cross = client.post(
        "/cases/new", data={**MLA, "csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    assert _count(live) == before
    # The same form with the token does what it says.
    done = client.post(
        "/cases/new",
        data={**MLA, "csrf": token},
        headers={"Origin": BASE, "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert _count(live) == before + 1


def test_a_stolen_session_is_dead_after_logout(console_for: Any, csrf: Any) -> None:
    client, console = console_for("GB-NCA", "officer")
    announced: list[str] = []
    console.announce = announced.append
    stolen = client.cookies.get(console.cookie_name)
    assert client.get("/cases").status_code == 200
    out = client.post("/logout", data={"csrf": csrf(client)})
    assert out.status_code == 200
    assert "signed out" in out.text
    assert len(announced) == 1
    assert "/login?token=" in announced[0]
    thief = TestClient(console.build(), base_url=BASE)
    thief.cookies.set(console.cookie_name, stolen or "")
    assert thief.get("/cases").status_code == 401
    assert thief.post("/cases/new", data=MLA).status_code == 401
    # The new link signs the officer in again.
    assert client.get(announced[0], follow_redirects=False).status_code == 303


def test_security_headers_on_every_answer(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    for path in ("/cases", "/no-such-page", "/static/console.css", "/cases/new"):
        answer = client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["referrer-policy"] == "same-origin"
    # No inline script anywhere: every <script> has a src on this origin.
    page = client.get("/cases/new").text
    assert re.findall(r"<script[^>]*>", page) == ['<script src="/static/console.js" defer>']
    # No event-handler attributes or inline styles, which the CSP would block anyway.
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", page)
    assert not re.search(r"<[^>]*\sstyle\s*=", page)


def test_other_host_names_are_not_answered(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    rebound = client.get("/cases", headers={"Host": "attacker.example:8780"})
    assert rebound.status_code == 400


def test_oversized_bodies_are_refused_and_change_nothing(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _console = console_for("GB-NCA", "officer", max_form_bytes=64 * 1024)
    before = _count(live)
    big = {**MLA, "csrf": csrf(client), "summary_of_facts": "x" * (80 * 1024)}
    answer = client.post("/cases/new", data=big)
    assert answer.status_code == 413
    assert "larger than this console accepts" in answer.text
    assert _count(live) == before


def test_user_text_is_escaped_and_control_characters_made_visible(
    console_for: Any, csrf: Any, live: Any
) -> None:
    client, _ = console_for("GB-NCA", "officer")
    # Markup is stored as text and shown as text.
    markup = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    saved = client.post(
        "/cases/new",
        data={**MLA, "csrf": csrf(client), "summary_of_facts": markup},
        follow_redirects=False,
    )
    assert saved.status_code == 303, saved.text
    page = client.get(saved.headers["location"]).text
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    # Control and bidi characters are refused by the form rules; the form shown again
    # quotes them as visible escapes, never as characters that reorder or erase text.
    refused = client.post(
        "/cases/new", data={**MLA, "csrf": csrf(client), "summary_of_facts": HOSTILE}
    )
    assert refused.status_code == 400
    assert "U+202E" in refused.text
    assert "\u202e" not in refused.text
    assert "\x1b" not in refused.text
    assert "\\u202e" in refused.text
    assert "\\x1b" in refused.text


def test_logs_carry_no_content_or_names(console_for: Any, csrf: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    secret = "Zyxwvut Qrstuv"
    with capture_logs() as logs:
        client.post("/cases/new", data={**MLA, "summary_of_facts": secret})
        client.post("/cases/new", data={**MLA, "csrf": csrf(client), "summary_of_facts": secret})
        client.get("/cases/MLA-DOES-NOT-EXIST")
    assert logs, "the console logs its refusals"
    assert secret not in repr(logs)


def test_forms_ask_the_browser_not_to_remember_what_is_typed(console_for: Any) -> None:
    # Autofill would keep names of victims and suspects in the browser's own storage.
    client, _ = console_for("GB-NCA", "officer")
    for path in ("/cases/new", "/match", "/messages/new", "/cases"):
        page = client.get(path).text
        tags = re.findall(r"<form[^>]*>", page)
        assert tags, path
        for tag in tags:
            assert 'autocomplete="off"' in tag, (path, tag)


def test_what_another_site_sends_is_refused_before_it_is_read(console_for: Any) -> None:
    client, _ = console_for("GB-NCA", "officer")
    files = [("file", (f"f{i}.bin", b"x" * 1000, "application/octet-stream")) for i in range(50)]
    answer = client.post(
        "/cases/GB-NCA-2026-00001/evidence",
        files=files,
        headers={"Origin": "http://127.0.0.1:9999"},
    )
    assert answer.status_code == 403
    # Only the routes that take files take large bodies, matched by their whole path.
    big = client.post("/cases/GB-NCA-2026-00001/act/evidence", content=b"x" * (3 * 1024 * 1024))
    assert big.status_code == 413


def test_a_form_with_more_files_than_its_route_takes_is_refused(
    console_for: Any, csrf: Any
) -> None:
    client, _ = console_for("GB-NCA", "officer")
    token = csrf(client)
    files = [("file", (f"f{i}.bin", b"x", "application/octet-stream")) for i in range(5)]
    many = client.post("/cases/GB-NCA-2026-00001/evidence", data={"csrf": token}, files=files)
    assert many.status_code == 400
    assert "files" in many.text.lower()
    # A plain form takes no file at all.
    stray = client.post(
        "/cases/new", data={"csrf": token, **MLA}, files=[("x", ("a.bin", b"x", "text/plain"))]
    )
    assert stray.status_code == 400


def test_upload_names_that_cannot_be_files_or_that_disguise_themselves_are_refused(
    console_for: Any, csrf: Any
) -> None:
    client, _ = console_for("GB-NCA", "officer")
    headers = {"X-CSRF-Token": csrf(client), "Accept": "application/json"}
    for name in ("\u65e5" * 200 + ".jpg", "invoice\u202egpj.exe"):
        answer = client.post(
            "/cases/GB-NCA-2026-00001/evidence",
            content=b"data",
            headers={**headers, "X-File-Name": urllib.parse.quote(name)},
        )
        assert answer.status_code == 400, answer.text
        # A script's request gets the sentence as text, not a page.
        assert answer.headers["content-type"].startswith("text/plain")
        assert "file name" in answer.text


def test_names_given_with_allow_host_are_answered(console_for: Any) -> None:
    client, _console = console_for("GB-NCA", "officer", extra_hosts=("jump.example",))
    page = client.get("/cases", headers={"Host": "jump.example:8780"})
    assert page.status_code == 200
    assert client.get("/cases", headers={"Host": "other.example:8780"}).status_code == 400
