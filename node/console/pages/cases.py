"""Cases: the list with its legal clocks, a case's page with the actions this officer may
take now, new requests from the form tables, and the supervisor's approval queue."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from exchange import forms
from exchange.case import Action, CaseState
from exchange.encoding import now_ms
from exchange.forms.base import FormFieldError, FormFieldTooLargeError
from exchange.forms.schema import details_schema, form_schema
from exchange.policy import Role
from node.client import HANDLING_CODES, CaseSummary, CaseView
from node.client.cases import ACTIONS
from node.console import forms as webforms
from node.console.app import Console, Refused, flash, redirect
from node.console.security import Session

CASE_TYPES = {t.value: t for t in forms.CaseType}
# New requests from this page; a victim-identification follow-up starts from a hit.
NEW_TYPES = ("mla", "extradition", "victim-id")
ACTION_LABELS = {
    "submit": "Submit",
    "acknowledge": "Acknowledge",
    "request_info": "Request information",
    "provide_info": "Provide information",
    "accept": "Accept",
    "refuse": "Refuse",
    "start_execution": "Start execution",
    "report_partial": "Report partial execution",
    "report_executed": "Report execution",
    "withdraw": "Withdraw",
    "close": "Close",
}
STATES = tuple(state.value for state in CaseState)
_ACTION_OF = {a.value: a for a in Action}
_READERS = frozenset({Role.OFFICER, Role.SUPERVISOR})


def _field_error(e: FormFieldError | FormFieldTooLargeError) -> tuple[str, str]:
    """(dotted path, the sentence after "Field <path>: ") of a form error."""
    message = str(e)
    prefix = f"Field {e.field}: "
    return e.field, message.removeprefix(prefix)


def _readers_only(console: Console) -> None:
    if console.role not in _READERS:
        raise Refused(
            "Cases are for officers and supervisors; this credential cannot read them.", 403
        )


def _files(view: CaseView) -> dict[str, dict[str, Any]]:
    """The case's files as the references a report or answer quotes."""
    return {
        a.attachment_id: {
            "attachment_id": a.attachment_id,
            "name": a.name,
            "sha256": a.sha256.hex(),
            "size": a.size,
        }
        for a in view.attachments
        if a.sha256
    }


def _file_choices(view: CaseView) -> list[dict[str, str]]:
    return [
        {"attachment_id": a.attachment_id, "label": f"{a.name} ({a.size:,} bytes)"}
        for a in view.attachments
        if a.sha256
    ]


def _action_forms(
    view: CaseView,
    values: dict[str, dict[str, Any]] | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    add: tuple[str, str] = ("", ""),
) -> list[dict[str, Any]]:
    """The form of each action this officer may take now, in the order the node gives."""
    out = []
    for name in _open_actions(view):
        action = _ACTION_OF.get(name)
        if action is None:
            continue
        schema = details_schema(action)
        fields = (
            webforms.widgets(
                schema,
                (values or {}).get(name),
                (errors or {}).get(name),
                add=add[1] if add[0] == name else "",
                files=_file_choices(view),
                scope=name.replace("_", "-") + "-",
            )
            if schema
            else []
        )
        out.append(
            {
                "action": name,
                "slug": name.replace("_", "-"),
                "label": ACTION_LABELS.get(name, name.replace("_", " ").capitalize()),
                "fields": fields,
                "open": bool((errors or {}).get(name)) or add[0] == name,
                "problem": ((errors or {}).get(name) or {}).get("", ""),
            }
        )
    return out


def _open_actions(view: CaseView) -> dict[str, None]:
    """The actions to offer: the node's list, and withdrawing a draft that waits for
    approval (the node lists nothing then; its author or the supervisor reading it may
    still withdraw it, and the node decides)."""
    names = dict.fromkeys(view.summary.allowed_actions)
    if view.summary.awaiting_approval:
        names.setdefault(Action.WITHDRAW.value)
    return names


def case_context(console: Console, view: CaseView) -> dict[str, Any]:
    s = view.summary
    now = now_ms()
    return {
        "view": view,
        "s": s,
        "clocks": s.clocks(now),
        "handling": [_code_name(c) for c in s.handling_codes],
        "form_rows": forms.describe_form(view.form) if view.form is not None else [],
        "steps": [
            {
                "e": e,
                "rows": forms.describe_details(e.details) if e.details is not None else [],
            }
            for e in view.timeline
        ],
        "can_approve": console.role == Role.SUPERVISOR
        and s.awaiting_approval
        and s.created_by != console.officer,
        "own_draft_waiting": s.awaiting_approval and s.created_by == console.officer,
        "can_upload": console.role in _READERS and s.state not in ("closed", "withdrawn"),
        "actions": _action_forms(view),
    }


def _code_name(code: int) -> str:
    return next((k for k, v in HANDLING_CODES.items() if int(v) == code), str(code))


def _list_context(console: Console, request: Request) -> dict[str, Any]:
    q = request.query_params
    return {
        "filters": {
            "state": q.get("state", ""),
            "peer": q.get("peer", ""),
            "type": q.get("type", ""),
            "overdue": q.get("overdue") == "on",
            "awaiting": q.get("awaiting") == "on",
            "open": q.get("open") == "on",
        },
        "states": STATES,
        "types": [t.value for t in forms.CaseType],
        "peers": console.me.peers,
    }


def register(console: Console) -> None:
    @console.page("/cases")
    async def case_list(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        ctx = _list_context(console, request)
        f = ctx["filters"]
        if f["state"] and f["state"] not in STATES:
            raise Refused(f"There is no case state {f['state']!r}.")
        if f["type"] and f["type"] not in ctx["types"]:
            raise Refused(f"There is no case type {f['type']!r}.")
        found: list[CaseSummary] = await console.call(
            console.cases.cases,
            states=(f["state"],) if f["state"] else (),
            peer=f["peer"],
            overdue_only=f["overdue"],
            awaiting_approval=f["awaiting"],
            case_type=f["type"],
            open_only=f["open"],
            limit=200,
        )
        now = now_ms()
        rows = [{"s": c, "clocks": c.clocks(now)} for c in found]
        return console.render(request, session, "cases.html", {**ctx, "rows": rows})

    @console.page("/approvals")
    async def approvals(console: Console, request: Request, session: Session) -> Response:
        if console.role != Role.SUPERVISOR:
            raise Refused("Only a supervisor approves drafts.", 403)
        found = await console.call(console.cases.cases, awaiting_approval=True, limit=200)
        now = now_ms()
        rows = [
            {"s": c, "clocks": c.clocks(now), "own": c.created_by == console.officer} for c in found
        ]
        return console.render(request, session, "approvals.html", {"rows": rows})

    @console.page("/cases/new", methods=("GET", "POST"))
    async def new_case(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        if request.method == "GET":
            kind = request.query_params.get("type", "mla")
            if kind not in NEW_TYPES:
                raise Refused(f"There is no request type {kind!r}.")
            values = _defaults(console, kind, request.query_params.get("reference", ""))
            return _new_page(console, request, session, kind, values, {}, {})
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        kind = str(post.get("_type", ""))
        if kind not in NEW_TYPES:
            raise Refused(f"There is no request type {kind!r}.")
        case_type = CASE_TYPES[kind]
        schema = form_schema(case_type)
        values = webforms.read(schema, post)
        extra = _extra(post)
        add = str(post.get(webforms.ADD_FIELD, ""))
        if add:
            return _new_page(console, request, session, kind, values, extra, {}, add)
        recipient = extra["recipient"]
        if recipient:
            values.setdefault("requested_authority", {"agency_id": recipient, "name": recipient})
        try:
            unknown = [h for h in extra["handling"] if h not in HANDLING_CODES]
            if unknown:
                raise Refused(f"There is no handling code {unknown[0]!r}.")
            form = forms.form_from_mapping(case_type, values, now_ms=now_ms())
        except (FormFieldError, FormFieldTooLargeError) as e:
            path, sentence = _field_error(e)
            return _new_page(
                console, request, session, kind, values, extra, {path: sentence}, status=400
            )
        view = await console.call(
            console.cases.create,
            form,
            recipient=recipient,
            handling=tuple(extra["handling"]),
            restricted_to=tuple(extra["named"]),
        )
        ref = view.summary.case_ref
        flash(session, f"Draft {ref} saved on your node; nothing is sent until you submit it.")
        return redirect(f"/cases/{ref}")

    @console.page("/cases/{ref}")
    async def case_page(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        view = await console.call(console.cases.get, request.path_params["ref"], True)
        return console.render(request, session, "case.html", case_context(console, view))

    @console.page("/cases/{ref}/act/{action}", methods=("POST",))
    async def act(console: Console, request: Request, session: Session) -> Response:
        _readers_only(console)
        ref = request.path_params["ref"]
        name = request.path_params["action"].replace("-", "_")
        action = _ACTION_OF.get(name)
        if action is None or name.replace("_", "-") not in ACTIONS:
            raise Refused(f"There is no case action {name!r}.")
        post = await request.form(max_part_size=console.settings.max_form_bytes)
        view = await console.call(console.cases.get, ref, True)
        schema = details_schema(action)
        values = webforms.read(schema, post, files=_files(view)) if schema else {}
        add = str(post.get(webforms.ADD_FIELD, ""))
        if add:
            return _case_again(console, request, session, view, name, values, {}, add)
        try:
            details = forms.details_from_mapping(action, values, now_ms=now_ms())
        except (FormFieldError, FormFieldTooLargeError) as e:
            path, sentence = _field_error(e)
            return _case_again(console, request, session, view, name, values, {path: sentence})
        try:
            expected = int(str(post.get("expected_step", "0")))
        except ValueError:
            expected = 0
        done = await console.call(
            console.cases.act,
            ref,
            name,
            details if schema else None,
            expected,
        )
        label = ACTION_LABELS.get(name, name)
        state = done.summary.local_state or done.summary.state
        if done.summary.awaiting_approval:
            flash(session, f"{label}: {ref} now waits for a supervisor's approval.")
        else:
            flash(session, f"{label}: done; the case is now {state.replace('_', ' ')}.")
        return redirect(f"/cases/{ref}")

    @console.page("/cases/{ref}/approve", methods=("POST",))
    async def approve(console: Console, request: Request, session: Session) -> Response:
        ref = request.path_params["ref"]
        if console.role != Role.SUPERVISOR:
            raise Refused("Only a supervisor approves drafts.", 403)
        await console.call(console.cases.approve, ref)
        flash(session, f"Approved {ref} with your signature; your node is sending it.")
        return redirect(f"/cases/{ref}")


def _case_again(
    console: Console,
    request: Request,
    session: Session,
    view: CaseView,
    action: str,
    values: dict[str, Any],
    errors: dict[str, str],
    add: str = "",
) -> Response:
    ctx = case_context(console, view)
    ctx["actions"] = _action_forms(view, {action: values}, {action: errors}, (action, add))
    for a in ctx["actions"]:
        if a["action"] == action:
            a["problem"] = webforms.unplaced(a["fields"], errors) or a["problem"]
    return console.render(request, session, "case.html", ctx, status=400 if errors else 200)


def _defaults(console: Console, kind: str, reference: str) -> dict[str, Any]:
    own = console.me.agency
    values: dict[str, Any] = {
        "requesting_authority": {"agency_id": own, "name": own},
        "contact_officer": {"name": console.officer},
        "language": "en",
    }
    if kind == "victim-id" and reference:
        holder = reference.rpartition(":")[0]
        values["match_reference"] = reference
        values["requested_authority"] = {"agency_id": holder, "name": holder}
        values["legal_basis"] = [{"instrument": "palermo-protocol"}]
    return values


def _extra(post: FormData) -> dict[str, Any]:
    named = str(post.get("_named", ""))
    return {
        "recipient": str(post.get("_recipient", "")).strip(),
        "handling": [str(h) for h in post.getlist("_handling")],
        "named": [n.strip() for n in named.replace("\n", ",").split(",") if n.strip()],
        "named_text": named,
    }


def _new_page(
    console: Console,
    request: Request,
    session: Session,
    kind: str,
    values: dict[str, Any],
    extra: dict[str, Any],
    errors: dict[str, str],
    add: str = "",
    status: int = 200,
) -> Response:
    schema = form_schema(CASE_TYPES[kind])
    fields = webforms.widgets(schema, values, errors, add=add)
    recipient = extra.get("recipient") or (values.get("requested_authority") or {}).get(
        "agency_id", ""
    )
    return console.render(
        request,
        session,
        "case_new.html",
        {
            "kind": kind,
            "kinds": NEW_TYPES,
            "title": CASE_TYPES[kind].title,
            "fields": fields,
            "problem": webforms.unplaced(fields, errors),
            "errors": errors,
            "recipient": recipient,
            "peers": console.me.peers,
            "handling_codes": list(HANDLING_CODES),
            "handling": extra.get("handling", []),
            "named": extra.get("named_text", ""),
        },
        status=status,
    )


__all__ = ["ACTION_LABELS", "register"]
