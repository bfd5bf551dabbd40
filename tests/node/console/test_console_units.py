"""The console's parts that need no node: sessions and their idle expiry, the login token,
CSRF comparison, origin checks, body limits, and web forms read back into the mappings
the protocol's form tables take (and their field errors put beside the right field)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.datastructures import FormData, Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from exchange import forms
from exchange.case import Action
from exchange.encoding import now_ms
from exchange.forms.schema import details_schema, form_schema
from node.console import forms as webforms
from node.console.security import BodyLimits, Sessions, csrf_ok, same_origin

FORBIDDEN = ("sqlalchemy", "alembic", "psycopg", "node.storage", "node.services", "node.server")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_console_imports_without_the_nodes_storage() -> None:
    code = (
        "import sys\n"
        "import node.console.app, node.console.server\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        f"or m.startswith({FORBIDDEN!r}))\n"
        "print('\\n'.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "", f"the console loaded: {out.stdout.split()}"


def test_a_login_token_is_spent_by_its_login() -> None:
    sessions = Sessions()
    token = sessions.new_login_token()
    sid = sessions.login(token)
    assert sid is not None
    assert sessions.get(sid) is not None
    assert sessions.login(token) is None
    assert sessions.login("") is None
    assert sessions.login("guess") is None


def test_sessions_end_when_idle_and_at_logout() -> None:
    clock = Clock()
    sessions = Sessions(idle_seconds=60, clock=clock)
    sid = sessions.login(sessions.new_login_token())
    assert sid is not None
    clock.now += 59
    assert sessions.get(sid) is not None  # use restarts the idle clock
    clock.now += 59
    assert sessions.get(sid) is not None
    clock.now += 61
    assert sessions.get(sid) is None
    assert sessions.active() == 0
    other = sessions.login(sessions.new_login_token())
    assert sessions.logout(other)
    assert sessions.get(other) is None
    assert not sessions.logout(other)


def test_each_session_has_its_own_csrf_token() -> None:
    sessions = Sessions()
    a = sessions.get(sessions.login(sessions.new_login_token()))
    b = sessions.get(sessions.login(sessions.new_login_token()))
    assert a is not None
    assert b is not None
    assert a.csrf != b.csrf
    assert csrf_ok(a, a.csrf)
    assert not csrf_ok(a, b.csrf)
    assert not csrf_ok(a, None)
    assert not csrf_ok(a, "")


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({}, True),
        ({"origin": "http://127.0.0.1:8780"}, True),
        ({"origin": "http://localhost:8780"}, True),
        ({"origin": "http://127.0.0.1:8781"}, False),  # another officer's console
        ({"origin": "https://evil.example"}, False),
        ({"origin": "null"}, False),
        ({"sec-fetch-site": "same-origin"}, True),
        ({"sec-fetch-site": "none"}, True),
        ({"sec-fetch-site": "same-site"}, False),
        ({"sec-fetch-site": "cross-site"}, False),
        # A form under a strict referrer policy: Chromium sends Origin: null.
        ({"origin": "null", "sec-fetch-site": "same-origin"}, True),
        ({"origin": "null", "sec-fetch-site": "cross-site"}, False),  # a sandboxed frame
    ],
)
def test_requests_from_other_sites_are_told_apart(headers: dict[str, str], ok: bool) -> None:
    allowed = frozenset({"http://127.0.0.1:8780", "http://localhost:8780"})
    assert same_origin(Headers(headers), allowed) is ok


def _echo_app(limit: int) -> TestClient:
    async def echo(request: Request) -> PlainTextResponse:
        body = b""
        async for block in request.stream():
            body += block
        return PlainTextResponse(f"got {len(body)}")

    app = Starlette(routes=[Route("/", echo, methods=["POST"])])
    return TestClient(BodyLimits(app, limit_of=lambda path: limit))


def test_body_limits_count_what_arrives_not_only_what_is_declared() -> None:
    client = _echo_app(100)
    assert client.post("/", content=b"x" * 100).text == "got 100"
    declared = client.post("/", content=b"x" * 101)
    assert declared.status_code == 413
    assert "larger than this console accepts (100 bytes)" in declared.text

    def chunks() -> Any:
        for _ in range(5):
            yield b"x" * 40

    chunked = client.post("/", content=chunks())
    assert chunked.status_code == 413
    bogus = client.post("/", content=b"x", headers={"content-length": "abc"})
    assert bogus.status_code in (400, 413)


MLA_POST = [
    ("legal_basis#n", "2"),
    ("legal_basis[0].instrument", ""),  # an empty slot is dropped
    ("legal_basis[1].instrument", "untoc-art18"),
    ("offences#n", "1"),
    ("offences[0].description", "Trafficking."),
    ("offences[0].legal_provision", "s. 2"),
    ("offences[0].maximum_penalty", "Life"),
    ("summary_of_facts", "Facts\nover two lines."),
    ("assistance_sought", "banking-records"),
    ("assistance_sought", "freezing-of-assets"),
    ("urgency", "ordinary"),
    ("contact_officer.name", "DS Marsh"),
    ("contact_officer.email", "marsh@nca.example"),
    ("requesting_authority.agency_id", "GB-NCA"),
    ("requesting_authority.name", "GB-NCA"),
    ("requested_authority.agency_id", "NG-NAPTIP"),
    ("requested_authority.name", "NG-NAPTIP"),
    ("language", "en"),
    ("confidentiality.required", "on"),
    ("not_a_field", "ignored"),
]


def test_a_post_reads_back_into_the_form_tables_mapping() -> None:
    schema = form_schema(forms.CaseType.MLA)
    values = webforms.read(schema, FormData(MLA_POST))
    assert values["legal_basis"] == [{"instrument": "untoc-art18"}]
    assert values["assistance_sought"] == ["banking-records", "freezing-of-assets"]
    assert values["confidentiality"] == {"required": True}
    assert "not_a_field" not in values
    form = forms.form_from_mapping(forms.CaseType.MLA, values, now_ms=now_ms())
    assert dict(forms.describe_form(form))["Summary of facts"] == "Facts\nover two lines."


def test_a_field_error_lands_on_the_field_its_path_names() -> None:
    schema = form_schema(forms.CaseType.MLA)
    post = [(k, v) for k, v in MLA_POST if k != "offences[0].legal_provision"]
    values = webforms.read(schema, FormData(post))
    with pytest.raises(forms.FormFieldError) as e:
        forms.form_from_mapping(forms.CaseType.MLA, values, now_ms=now_ms())
    assert e.value.field == "offences[0].legal_provision"
    shown = webforms.widgets(schema, values, {e.value.field: "is required."})
    offences = next(w for w in shown if w.path == "offences")
    slot = offences.children[0]
    provision = next(w for w in slot.children if w.path == "offences[0].legal_provision")
    assert provision.error == "is required."
    assert provision.dom_id == "f-offences-0--legal-provision"
    others = [w for w in _all_widgets(shown) if w.error]
    assert others == [provision]


def test_add_another_gives_a_list_one_more_slot_up_to_its_limit() -> None:
    schema = form_schema(forms.CaseType.MLA)
    shown = webforms.widgets(schema, {}, {}, add="offences")
    offences = next(w for w in shown if w.path == "offences")
    assert [c.path for c in offences.children] == ["offences[0]", "offences[1]"]
    # Slot counts posted beyond a list's limit are not read.
    huge = FormData([("offences#n", "1000000")])
    assert webforms.read(schema, huge).get("offences") is None


def test_action_details_with_files_quote_the_case_s_own_attachments() -> None:
    schema = details_schema(Action.REPORT_EXECUTED)
    assert schema is not None
    files = {"a" * 32: {"attachment_id": "a" * 32, "name": "x.pdf", "sha256": "00" * 32, "size": 3}}
    post = FormData([("summary", "Done."), ("evidence", "a" * 32), ("evidence", "forged")])
    values = webforms.read(schema, post, files=files)
    assert values["evidence"] == [files["a" * 32]]
    shown = webforms.widgets(
        schema, values, {}, files=[{"attachment_id": "a" * 32, "label": "x.pdf (3 bytes)"}]
    )
    evidence = next(w for w in shown if w.path == "evidence")
    assert evidence.kind == "files"
    assert evidence.chosen == ["a" * 32]


def test_an_untouched_optional_slot_reads_as_empty() -> None:
    schema = form_schema(forms.CaseType.MLA)
    shown = {w.path: w for w in _all_widgets(webforms.widgets(schema, {}, {}, add="legal_basis"))}
    # Choices of an optional list's slot start empty, so the browser posts nothing for it.
    assert shown["persons[0].kind"].value == ""
    assert shown["persons[0].identifiers[0].kind"].value == ""
    # The first slot of a required list offers no empty choice; an added slot does.
    assert shown["legal_basis[0].instrument"].required
    assert not shown["legal_basis[1].instrument"].required
    assert not shown["persons[0].kind"].required
    post = FormData([*MLA_POST, ("persons#n", "1"), ("persons[0].kind", "")])
    assert "persons" not in webforms.read(schema, post)


def test_forms_sharing_a_page_have_ids_of_their_own() -> None:
    partial = details_schema(Action.REPORT_PARTIAL)
    final = details_schema(Action.REPORT_EXECUTED)
    assert partial is not None
    assert final is not None
    a = {w.dom_id for w in _all_widgets(webforms.widgets(partial, scope="report-partial-"))}
    b = {w.dom_id for w in _all_widgets(webforms.widgets(final, scope="report-executed-"))}
    assert not a & b


def test_a_session_ends_at_its_maximum_age_even_in_use() -> None:
    clock = Clock()
    sessions = Sessions(idle_seconds=60, clock=clock, max_age_seconds=300)
    sid = sessions.login(sessions.new_login_token())
    for _ in range(5):
        clock.now += 59
        assert sessions.get(sid) is not None
    clock.now += 59
    assert sessions.get(sid) is None


def test_one_login_link_at_a_time_and_not_forever() -> None:
    clock = Clock()
    sessions = Sessions(clock=clock, token_seconds=600)
    old = sessions.new_login_token()
    new = sessions.new_login_token()
    assert sessions.login(old) is None  # a newer link voids it
    assert sessions.login(new) is not None
    late = sessions.new_login_token()
    clock.now += 601
    assert sessions.login(late) is None


def _all_widgets(ws: list[webforms.Widget]) -> list[webforms.Widget]:
    return list(webforms.walk(ws))
