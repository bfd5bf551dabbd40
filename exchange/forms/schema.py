"""The field tables rendered for people and programs: the field tables of docs/forms.md
(`render_doc`, run by scripts/gen_forms_doc.py; a test fails when the document is
stale) and a JSON-able schema a console builds its forms from (`form_schema`,
`details_schema`). Both are derived from the specs of `exchange.forms.blocks`,
`.requests` and `.details`, and from the proto descriptors. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action
from exchange.forms.api import form_keys
from exchange.forms.base import TEXT_CLASSES, CaseType
from exchange.forms.blocks import SHARED_NAMES
from exchange.forms.details import DETAILS
from exchange.forms.requests import REQUESTS
from exchange.forms.spec import (
    Blob,
    ByteCount,
    CalendarDate,
    Choice,
    Field,
    Flag,
    Group,
    Instant,
    Many,
    MessageSpec,
    Text,
)
from exchange.forms.vocab import ACTION_DETAILS

# --- every spec ------------------------------------------------------------------------------


def all_specs() -> Iterator[MessageSpec]:
    """Every message spec reachable from the three requests and the details, once each."""
    seen: set[int] = set()

    def walk(spec: MessageSpec) -> Iterator[MessageSpec]:
        if id(spec) in seen:
            return
        seen.add(id(spec))
        yield spec
        for f in spec.fields:
            item = f.item if isinstance(f, Many) else f
            if isinstance(item, Group):
                yield from walk(item.spec)

    for _, spec in REQUESTS.values():
        yield from walk(spec)
    for spec in DETAILS.values():
        yield from walk(spec)


def spec_named(name: str) -> MessageSpec:
    """The first spec of the proto message `name` (Authority has one per party)."""
    for spec in all_specs():
        if spec.name == name:
            return spec
    raise KeyError(name)


def _descriptor(spec: MessageSpec, name: str) -> Any:
    """The proto FieldDescriptor of field `name` (typed Any: protobuf has two classes)."""
    return spec.proto.DESCRIPTOR.fields_by_name[name]


# The messages that only hold a oneof of others: REQUESTS and DETAILS stand for them.
ONEOF_HOLDERS: dict[str, tuple[str, dict[str, MessageSpec]]] = {
    "CaseForm": ("form", {oneof: spec for oneof, spec in REQUESTS.values()}),
    "TransitionDetails": ("details", dict(DETAILS)),
}

# The field kinds that may spec each proto type.
_KINDS: dict[int, tuple[type[Field], ...]] = {
    FieldDescriptor.TYPE_STRING: (Text, CalendarDate),
    FieldDescriptor.TYPE_ENUM: (Choice,),
    FieldDescriptor.TYPE_BYTES: (Blob,),
    FieldDescriptor.TYPE_BOOL: (Flag,),
    FieldDescriptor.TYPE_INT64: (Instant,),
    FieldDescriptor.TYPE_UINT64: (ByteCount,),
    FieldDescriptor.TYPE_MESSAGE: (Group,),
}


def _field_problems(spec: MessageSpec, f: Field, fd: Any) -> Iterator[str]:
    where = f"{spec.name}.{fd.name}"
    if fd.is_repeated != isinstance(f, Many):
        yield f"{where}: {'a' if fd.is_repeated else 'not a'} repeated field, specced otherwise"
    item = f.item if isinstance(f, Many) else f
    if not isinstance(item, _KINDS.get(fd.type, ())):
        yield f"{where}: proto type {fd.type} is specced as {type(item).__name__}"
    elif isinstance(item, Group) and item.spec.name != fd.message_type.name:
        yield f"{where}: a {fd.message_type.name} specced as {item.spec.name}"
    elif isinstance(item, Choice):
        wire = {v.number for v in fd.enum_type.values if v.number}
        if {t.value for t in item.vocab} != wire:
            yield f"{where}: the vocabulary {item.vocab.noun!r} is not {fd.enum_type.name}"


def coverage_problems(specs: list[MessageSpec] | None = None) -> list[str]:
    """What the specs miss of proto/mlax/v1/forms.proto: messages and fields without a
    spec, fields specced as another kind, oneof members without their spec."""
    specs = list(all_specs()) if specs is None else specs
    problems: list[str] = []
    named = {spec.name for spec in specs}
    messages: Any = pb.DESCRIPTOR.message_types_by_name
    for message in messages.values():
        if message.name not in named and message.name not in ONEOF_HOLDERS:
            problems.append(f"{message.name} has no spec")
    for spec in specs:
        specced = {f.name: f for f in spec.fields}
        for fd in spec.proto.DESCRIPTOR.fields:
            f = specced.pop(fd.name, None)
            if f is None:
                problems.append(f"{spec.name}.{fd.name} has no spec")
            else:
                problems += _field_problems(spec, f, fd)
        problems += [f"{spec.name}.{name} is not a proto field" for name in specced]
    for holder, (oneof, members) in ONEOF_HOLDERS.items():
        for fd in messages[holder].oneofs_by_name[oneof].fields:
            member = members.get(fd.name)
            if member is None:
                problems.append(f"{holder}.{fd.name} has no spec")
            elif member.name != fd.message_type.name:
                problems.append(f"{holder}.{fd.name}: specced as {member.name}")
    return problems


# --- docs/forms.md -------------------------------------------------------------------------


def field_type(f: Field, fd: Any) -> str:
    """The type column of a field: `name ¶`, `repeated Offence`, `BCP 47 tag`..."""
    if isinstance(f, Many):
        return f"repeated {field_type(f.item, fd)}"
    if isinstance(f, Text):
        if f.size in TEXT_CLASSES:
            kind = TEXT_CLASSES[f.size]
        elif f.size is not None:
            what = f.shape.name if f.shape else "text"
            kind = f"{what}, at most {f.size:,} characters"
        else:
            kind = f.shape.name if f.shape else "text"
        return f"{kind} ¶" if f.multiline else kind
    if isinstance(f, Choice | Group):
        return f"`{fd.message_type.name if isinstance(f, Group) else fd.enum_type.name}`"
    if isinstance(f, CalendarDate):
        return "partial date" if f.partial else "date"
    if isinstance(f, Blob):
        return f"{f.size} bytes"
    return {Instant: "instant", Flag: "bool", ByteCount: "size in bytes"}[type(f)]


def field_rule(f: Field) -> str:
    """The rule column: requirement, entries, clock rule, then the field's note."""
    parts: list[str] = []
    required = getattr(f, "required", "")
    if isinstance(f, Choice):
        parts.append(
            "optional" if f.optional else "required on the wire" if f.default else "required"
        )
    elif required and not callable(required):
        parts.append("at least one" if isinstance(f, Many) else "required")
    if isinstance(f, Many):
        choices = isinstance(f.item, Choice) and f.max_items == len(f.item.vocab)
        if f.unique is not None:
            parts.append("each once" if isinstance(f.item, Choice) else f.unique.note)
        if not choices:
            parts.append(f"at most {f.max_items:,}")
    if isinstance(f, CalendarDate):
        parts.append("not in the future (clock rule)")
    if isinstance(f, Instant):
        parts.append("optional; not passed (clock rule)")
    if f.note:
        parts.append(f.note)
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def fields_table(spec: MessageSpec, names: tuple[str, ...] | None = None) -> str:
    """The markdown field table of `spec` (only `names` when given), then its rules."""
    lines = ["| field | type | rule |", "|---|---|---|"]
    for f in spec.fields:
        if names is None or f.name in names:
            fd = _descriptor(spec, f.name)
            lines.append(f"| `{f.name}` | {field_type(f, fd)} | {_cell(field_rule(f))} |")
    if names is not None and names != SHARED_NAMES:
        lines.append("| shared fields | | section 5 |")
    rules = [r.note for r in spec.rules if r.note and (names is None or r.after in names)]
    if rules:
        lines += ["", *(f"- {note}" for note in rules)]
    return "\n".join(lines)


def list_limits_table() -> str:
    """Every list with its limit, as docs/forms.md section 4 shows them."""
    limits: dict[str, str] = {}
    for spec in all_specs():
        for f in spec.fields:
            if isinstance(f, Many):
                choices = isinstance(f.item, Choice) and f.max_items == len(f.item.vocab)
                limit = "one of each choice" if choices else f"{f.max_items:,}"
                if limits.setdefault(f.name, limit) != limit:
                    raise ValueError(f"{f.name} has two limits; name the messages in the doc.")
    lines = ["| list | at most |", "|---|---|"]
    lines += [f"| `{name}` | {limit} |" for name, limit in limits.items()]
    return "\n".join(lines)


def text_classes_table() -> str:
    """The classes of free text and their limits in characters."""
    lines = ["| class | at most (characters) |", "|---|---|"]
    lines += [f"| {name} | {limit:,} |" for limit, name in TEXT_CLASSES.items()]
    return "\n".join(lines)


def actions_table() -> str:
    """Each action with the kind and message of the details it carries."""
    lines = ["| action | details kind | message |", "|---|---|---|"]
    for action in Action:
        kind = ACTION_DETAILS[action]
        message = f"`{DETAILS[kind].name}`" if kind else "none: the form is the content"
        lines.append(f"| `{action.value}` | {f'`{kind}`' if kind else ''} | {message} |")
    return "\n".join(lines)


def generated(block: str) -> str:
    """The text of one generated block of docs/forms.md, by its name."""
    if block == "list-limits":
        return list_limits_table()
    if block == "text-classes":
        return text_classes_table()
    if block == "actions":
        return actions_table()
    if block == "shared":
        return fields_table(REQUESTS[CaseType.MLA][1], SHARED_NAMES)
    kind, _, name = block.partition(" ")
    spec = spec_named(name)
    if kind == "own":
        return fields_table(spec, tuple(f.name for f in spec.fields if f.name not in SHARED_NAMES))
    if kind == "fields":
        return fields_table(spec)
    raise KeyError(block)


_BLOCK = re.compile(r"(<!-- generated: ([^>]+?) -->\n)(.*?)(<!-- end generated -->)", re.DOTALL)


def render_doc(text: str) -> str:
    """docs/forms.md with every generated block rewritten from the specs."""
    return _BLOCK.sub(lambda m: f"{m[1]}{generated(m[2])}\n{m[4]}", text)


def doc_blocks(text: str) -> list[str]:
    """The names of the generated blocks of a document."""
    return [m[2] for m in _BLOCK.finditer(text)]


# --- a console's forms ---------------------------------------------------------------------


def field_schema(f: Field, fd: Any) -> dict[str, Any]:
    """One field for a console: its input kind, label, help, limits and choices."""
    required: Any = getattr(f, "required", "")
    out: dict[str, Any] = {
        "name": f.name,
        "label": f.label,
        "type": field_type(f, fd),
        "required": "conditional" if callable(required) else bool(required),
        "help": f.note,
    }
    if isinstance(f, Many):
        out |= {
            "kind": "list",
            "max_items": f.max_items,
            "unique": f.unique is not None,
            "item": field_schema(f.item, fd),
        }
    elif isinstance(f, Text):
        out |= {"kind": "text", "multiline": f.multiline, "upper_case": f.upper}
        if f.size is not None:
            out["max_chars"] = f.size
            out["forbidden_chars"] = f.bad_chars()
        if f.shape is not None:
            out["shape"] = {"name": f.shape.name, "pattern": f.shape.pattern}
    elif isinstance(f, Choice):
        choices = [{"slug": t.slug, "label": t.label} for t in f.vocab]
        out |= {
            "kind": "choice",
            "required": not f.optional,
            "choices": choices,
            "default": f.default,
        }
    elif isinstance(f, Group):
        out |= {"kind": "group", **message_schema(f.spec)}
    elif isinstance(f, CalendarDate):
        out |= {"kind": "date", "partial": f.partial}
    else:
        out["kind"] = type(f).__name__.lower()
    return out


def message_schema(spec: MessageSpec) -> dict[str, Any]:
    """A message for a console: its fields in display order, and the keys of a form file."""
    return {
        "message": spec.name,
        "keys": list(spec.keys),
        "fields": [field_schema(f, _descriptor(spec, f.name)) for f in spec.fields if f.readable],
    }


def form_schema(case_type: CaseType) -> dict[str, Any]:
    """The form of one case type, JSON-able: what a console renders and posts back."""
    out = message_schema(REQUESTS[case_type][1])
    out |= {"case_type": case_type.value, "title": case_type.title}
    out["keys"] = list(form_keys(case_type))
    return out


def details_schema(action: Action) -> dict[str, Any] | None:
    """The details form of one action, JSON-able; None when it carries none (submit)."""
    kind = ACTION_DETAILS[action]
    if kind is None:
        return None
    return {"action": action.value, "kind": kind, **message_schema(DETAILS[kind])}
