"""Web forms built from the same field tables as `mlax case new` (exchange.forms.schema).

`widgets(schema, values, errors)` turns a form or details schema and the values entered
so far into a tree the `field` macro of templates/macros.html renders; every input is
named by its dotted path (`offences[0].description`), the path a FormFieldError names,
so the protocol's own sentence is shown beside the field it is about. `read(schema,
post)` reads a post back into the mapping `forms.form_from_mapping` takes. It walks the
schema, never the post: a field the schema does not have is never read.

Lists render one slot per entry (at least one) and an "add another" button; empty slots
are dropped when read, and the form is shown again from what was read, so slot numbers
and error paths always agree.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

# Post fields the console adds around a form (recipient, handling...) start with "_".
ADD_FIELD = "_add"
SLOTS_SUFFIX = "#n"
# The messages of a list whose entries are the case's own files, chosen by checkbox.
ATTACHMENT_REF = "`AttachmentRef`"


@dataclass
class Widget:
    path: str
    name: str
    label: str
    kind: str
    help: str = ""
    required: bool = False
    conditional: bool = False
    value: Any = None
    error: str = ""
    input_type: str = "text"
    multiline: bool = False
    choices: list[dict[str, str]] = field(default_factory=list)
    placeholder: str = ""
    children: list[Widget] = field(default_factory=list)
    max_items: int = 0
    # For a list of choices: the slugs chosen. For a list of files: the ids chosen.
    chosen: list[str] = field(default_factory=list)
    # Tells apart the ids of several forms on one page (a case's actions share fields).
    scope: str = ""

    @property
    def dom_id(self) -> str:
        """An id safe for HTML attributes and CSS (paths hold dots and brackets)."""
        return "f-" + self.scope + "".join(c if c.isalnum() else "-" for c in self.path)


def _value_at(values: Any, key: str | int) -> Any:
    if isinstance(key, int):
        return values[key] if isinstance(values, list) and key < len(values) else None
    return values.get(key) if isinstance(values, Mapping) else None


def _present(value: Any) -> bool:
    if value is None:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, Mapping | list):
        return any(_present(v) for v in (value.values() if isinstance(value, Mapping) else value))
    return True


def widgets(
    schema: Mapping[str, Any],
    values: Mapping[str, Any] | None = None,
    errors: Mapping[str, str] | None = None,
    *,
    add: str = "",
    files: Sequence[Mapping[str, str]] = (),
    prefix: str = "",
    scope: str = "",
) -> list[Widget]:
    """The widgets of a message schema's fields, filled from `values`.

    `add` names a list that gets one more slot (its "add another" was pressed); `files`
    are the case's attachments (`attachment_id`, `label`) for lists of file references;
    `scope` prefixes the element ids of a form that shares a page with others.
    """
    out = [
        _widget(
            f, _value_at(values or {}, f["name"]), errors or {}, f"{prefix}{f['name']}", add, files
        )
        for f in schema["fields"]
    ]
    if scope:
        for w in walk(out):
            w.scope = scope
    return out


def walk(ws: list[Widget]) -> Iterator[Widget]:
    """Every widget of a form, nested ones included, in page order."""
    for w in ws:
        yield w
        yield from walk(w.children)


def unplaced(ws: list[Widget], errors: Mapping[str, str]) -> str:
    """The errors no input of the form shows (a path it has no field for), as one line
    to show above the form."""
    known = {w.path for w in walk(ws)}
    return "; ".join(f"{p}: {m}" if p else m for p, m in errors.items() if p not in known)


def _widget(
    f: Mapping[str, Any],
    value: Any,
    errors: Mapping[str, str],
    path: str,
    add: str,
    files: Sequence[Mapping[str, str]],
    in_list: bool = False,
) -> Widget:
    kind = f["kind"]
    w = Widget(
        path=path,
        name=f["name"],
        label=f.get("label") or f["name"].replace("_", " "),
        kind=kind,
        help=f.get("help") or "",
        required=f.get("required") is True,
        conditional=f.get("required") == "conditional",
        error=errors.get(path, ""),
    )
    if kind == "group":
        w.children = [
            _widget(
                sub,
                _value_at(value, sub["name"]),
                errors,
                f"{path}.{sub['name']}",
                add,
                files,
                in_list,
            )
            for sub in f["fields"]
        ]
    elif kind == "list":
        item = f["item"]
        w.max_items = int(f.get("max_items") or 0)
        entries = value if isinstance(value, list) else []
        if item["kind"] == "choice":
            w.kind = "multichoice"
            w.choices = list(item["choices"])
            w.chosen = [str(v) for v in entries]
        elif item.get("type") == ATTACHMENT_REF:
            w.kind = "files"
            w.choices = [{"slug": x["attachment_id"], "label": x["label"]} for x in files]
            w.chosen = [str(_value_at(e, "attachment_id") or "") for e in entries]
        else:
            slots = max(len(entries), 1) + (1 if add == path else 0)
            if w.max_items:
                slots = min(slots, w.max_items)
            # Choices start empty in every slot but the first of a required list, so a
            # slot left untouched reads as empty instead of as the defaults.
            w.children = [
                _widget(
                    item,
                    _value_at(entries, i),
                    errors,
                    f"{path}[{i}]",
                    add,
                    files,
                    in_list or not (w.required and i == 0),
                )
                for i in range(slots)
            ]
            for i, child in enumerate(w.children):
                child.label = f"{w.label} {i + 1}"
    elif kind == "choice":
        # In a slot that may stay empty (`in_list`), a choice starts empty: an untouched
        # optional person or identifier must read as empty, not as the defaults.
        w.choices = list(f["choices"])
        w.value = str(value) if value else ("" if in_list else (f.get("default") or ""))
        w.required = w.required and not in_list
    elif kind == "flag":
        w.value = bool(value)
    elif kind == "date":
        w.value = str(value or "")
        if f.get("partial"):
            w.placeholder = "YYYY, YYYY-MM or YYYY-MM-DD"
        else:
            w.input_type = "date"
    elif kind == "instant":
        w.value = str(value or "")
        w.input_type = "date"
    else:
        w.value = "" if value is None else str(value)
        w.multiline = bool(f.get("multiline"))
        if "email" in str(f.get("type", "")):
            w.input_type = "email"
    return w


def read(
    schema: Mapping[str, Any],
    post: FormData,
    *,
    files: Mapping[str, Mapping[str, Any]] | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """The mapping a post gives for `schema`; empty fields and empty list slots left out.

    `files` maps attachment ids to the references a list of files quotes.
    """
    out: dict[str, Any] = {}
    for f in schema["fields"]:
        value = _read(f, post, f"{prefix}{f['name']}", files or {})
        if _present(value):
            out[f["name"]] = value
    return out


def _read(
    f: Mapping[str, Any], post: FormData, path: str, files: Mapping[str, Mapping[str, Any]]
) -> Any:
    kind = f["kind"]
    if kind == "group":
        group = {}
        for sub in f["fields"]:
            value = _read(sub, post, f"{path}.{sub['name']}", files)
            if _present(value):
                group[sub["name"]] = value
        return group
    if kind == "list":
        item = f["item"]
        limit = int(f.get("max_items") or 1000)
        if item["kind"] == "choice":
            return [v for v in post.getlist(path) if isinstance(v, str) and v][:limit]
        if item.get("type") == ATTACHMENT_REF:
            ids = [v for v in post.getlist(path) if isinstance(v, str)]
            return [dict(files[i]) for i in ids if i in files][:limit]
        try:
            slots = min(int(str(post.get(path + SLOTS_SUFFIX, "0"))), limit)
        except ValueError:
            slots = 0
        entries = [_read(item, post, f"{path}[{i}]", files) for i in range(max(slots, 0))]
        return [e for e in entries if _present(e)]
    raw = post.get(path)
    if kind == "flag":
        return True if raw == "on" else None
    if not isinstance(raw, str) or not raw.strip():
        return None
    return raw


__all__ = ["ADD_FIELD", "SLOTS_SUFFIX", "Widget", "read", "unplaced", "walk", "widgets"]
