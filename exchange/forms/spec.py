"""Field specs: how one proto field is read from a form file, checked and described.

A `MessageSpec` is the table of one proto message: its fields, each a field kind below,
in the order they are shown (and read and checked, except that a field may ask to be
checked after another), and its cross-field rules, small functions that run right
after the field they follow. `read_message`, `check_message` and `rows_of` walk a spec.
`exchange.forms.blocks`, `.requests` and `.details` hold the specs of every message of
proto/mlax/v1/forms.proto; `exchange.forms.schema` renders them for docs/forms.md and
for a console that builds its forms from them. Pure.

Field kinds:

- `Text`: free text of a size class (`size`, single line or `multiline`), or coded text
  of a `Shape` (agency id, country, language tag...), or both;
- `Choice`: one choice of a `Vocabulary` (a proto enum), a slug in a form file;
- `CalendarDate` (`partial` allows YYYY-MM and YYYY), `Instant` (unix ms), `Flag`;
- `Blob` (bytes: a UUID or a digest, written as hex), `ByteCount` (a size in bytes);
- `Group`: one nested message, with its own spec;
- `Many`: a repeated field of one of the kinds above, with its entry limit.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from google.protobuf.message import Message

from exchange.case import Action
from exchange.forms.base import CaseType, fail, format_instant
from exchange.forms.checks import (
    BAD_LINE_CHARS,
    BAD_TEXT_CHARS,
    Shape,
    check_calendar_date,
    check_count,
    check_instant,
    check_text,
    check_unique,
)
from exchange.forms.reading import (
    as_calendar_date,
    as_instant,
    as_list,
    as_text,
    at,
    table,
    what,
)
from exchange.forms.vocab import Vocabulary

Rows = list[tuple[str, str]]


@dataclass(frozen=True)
class Ctx:
    """What checks need beyond the message: the clock, and the case type or action."""

    now_ms: int | None
    case_type: CaseType | None = None
    action: Action | None = None


# The sentence raised for an empty value, "" when the field is optional; or a function of
# the message holding the field (and the context) giving that sentence.
Required = str | Callable[[Any, Ctx], str]


def need(required: Required, parent: Any, ctx: Ctx) -> str:
    return required(parent, ctx) if callable(required) else required


@dataclass(frozen=True)
class Field:
    """One field of a message spec; `name` is "" for the entries of a `Many`.

    `label` is what a person calls the field (a console's input, a timeline row); `note`
    is its rule in words, for docs/forms.md and a console's help. When a form is
    described, the field is one row labelled `row` (default: `label`), whose value
    `show` computes from the whole message where it merges fields; a field `shown_in`
    another field's row has none of its own.
    """

    name: str = ""
    label: str = field(default="", kw_only=True)
    note: str = field(default="", kw_only=True)
    row: str = field(default="", kw_only=True)
    show: Callable[[Any], str] | None = field(default=None, kw_only=True)
    shown_in: str = field(default="", kw_only=True)
    # False for a field a form file does not set (ExecutionReport.final follows the action).
    readable: bool = field(default=True, kw_only=True)
    # Checked right after this other field (and its rules) rather than in table order.
    check_after: str = field(default="", kw_only=True)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        raise NotImplementedError

    def check_in(self, parent: Any, path: str, ctx: Ctx) -> None:
        self.check(getattr(parent, self.name), path, parent, ctx)

    def read(self, raw: object, path: str) -> Any:
        """The proto value of a form-file value; None (absent) gives the field's default."""
        raise NotImplementedError

    def read_entry(self, raw: object, path: str) -> Any:
        """The proto value of one entry of a list."""
        return self.read(raw, path)

    def read_entries(self, entries: Sequence[object], path: str) -> list[Any]:
        """The proto values of the entries of a list at `path`."""
        return [self.read_entry(v, f"{path}[{i}]") for i, v in enumerate(entries)]

    def single_types(self) -> tuple[type, ...]:
        """The types of a lone value a form file may give where a list of these is read."""
        return (str,)

    def list_noun(self) -> str:
        """What a list of these is called in an error: "a list of text"."""
        return "text"

    def display(self, value: Any) -> str:
        return str(value)

    def rows(self, parent: Any) -> Rows:
        if self.shown_in or not (self.row or self.label):
            return []
        value = self.show(parent) if self.show else self.display(getattr(parent, self.name))
        return [(self.row or self.label, value)]


@dataclass(frozen=True)
class Text(Field):
    """Text. With a `size`, free text: its length, its characters (one line unless
    `multiline`), then that it is not blank when required. Without, coded text: present
    when required, then of its `shape`, which bounds its length. A `shape` comes last."""

    size: int | None = field(default=None, kw_only=True)
    multiline: bool = field(default=False, kw_only=True)
    required: Required = field(default="", kw_only=True)
    shape: Shape | None = field(default=None, kw_only=True)
    upper: bool = field(default=False, kw_only=True)  # upper-cased on reading

    def __post_init__(self) -> None:
        if self.size is None and self.shape is None:
            raise ValueError(f"Text {self.name!r} needs a size limit or a shape.")

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        required = need(self.required, parent, ctx)
        if self.size is not None:
            check_text(path, value, self.size, required=required, multiline=self.multiline)
        elif required and not value:
            fail(path, required)
        shape = self.shape
        if shape is not None and (value or not shape.skip_empty) and not shape.test(value):
            fail(path, shape.problem(value))

    def read(self, raw: object, path: str) -> str:
        text = as_text(path, raw)
        return text.upper() if self.upper else text

    def bad_chars(self) -> str:
        return (BAD_TEXT_CHARS if self.multiline else BAD_LINE_CHARS).pattern


@dataclass(frozen=True)
class Choice(Field):
    """A proto enum value, read from a slug of `vocab`; UNSPECIFIED is refused unless the
    choice is `optional`."""

    vocab: Vocabulary[Any] = field(kw_only=True)
    default: str = field(default="", kw_only=True)  # the slug a form file may leave out
    # An optional choice may stay UNSPECIFIED (a field added later: older forms lack it).
    optional: bool = field(default=False, kw_only=True)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        if self.optional and value == 0:
            return
        self.vocab.check(path, value)

    def read(self, raw: object, path: str) -> int:
        if raw is None:
            if not self.default:
                return 0
            raw = self.default
        if not isinstance(raw, str):
            fail(path, f"expected one of {', '.join(self.vocab.slugs())}, not {what(raw)}.")
        return int(self.vocab.from_slug(path, raw))

    def read_entry(self, raw: object, path: str) -> int:
        return int(self.vocab.from_slug(path, as_text(path, raw)))

    def read_entries(self, entries: Sequence[object], path: str) -> list[Any]:
        # Every entry must be text before any is looked up.
        slugs = [as_text(f"{path}[{i}]", v) for i, v in enumerate(entries)]
        return [self.vocab.from_slug(f"{path}[{i}]", s) for i, s in enumerate(slugs)]

    def display(self, value: Any) -> str:
        return "" if self.optional and value == 0 else self.vocab.label(value)


@dataclass(frozen=True)
class CalendarDate(Field):
    """An ISO date as text; `partial` allows YYYY-MM and YYYY. Not in the future."""

    partial: bool = field(default=False, kw_only=True)
    required: Required = field(default="", kw_only=True)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        required = need(self.required, parent, ctx)
        check_calendar_date(path, value, ctx.now_ms, partial=self.partial, required=required)

    def read(self, raw: object, path: str) -> str:
        return as_calendar_date(path, raw)


@dataclass(frozen=True)
class Instant(Field):
    """Unix milliseconds, 0 for none; with the clock, not passed."""

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        check_instant(path, value, ctx.now_ms, future=True)

    def read(self, raw: object, path: str) -> int:
        return 0 if raw is None else as_instant(path, raw)

    def display(self, value: Any) -> str:
        return format_instant(value) if value else ""


@dataclass(frozen=True)
class Flag(Field):
    """A bool; false when absent."""

    def single_types(self) -> tuple[type, ...]:
        return (bool,)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        return

    def read(self, raw: object, path: str) -> bool:
        if raw is None:
            return False
        if not isinstance(raw, bool):
            fail(path, f"expected true or false, not {what(raw)}.")
        return raw


@dataclass(frozen=True)
class Blob(Field):
    """Bytes of a fixed `size`, written in a form file as a UUID or as hex digits."""

    size: int = field(kw_only=True)
    encoding: Literal["uuid", "hex"] = field(kw_only=True)
    problem: str = field(kw_only=True)  # the sentence for bytes of another size
    unreadable: str = field(kw_only=True)  # the sentence for text of another shape

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        if len(value) != self.size:
            fail(path, self.problem)

    def read(self, raw: object, path: str) -> bytes:
        text = as_text(path, raw)
        if self.encoding == "uuid":
            try:
                return uuid.UUID(text).bytes
            except ValueError:
                fail(path, self.unreadable)
        digits = text.lower()
        if not re.fullmatch(f"[0-9a-f]{{{2 * self.size}}}", digits):
            fail(path, self.unreadable)
        return bytes.fromhex(digits)

    def display(self, value: Any) -> str:
        return bytes(value).hex()


@dataclass(frozen=True)
class ByteCount(Field):
    """A size in bytes (uint64), required in a form file."""

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        return

    def read(self, raw: object, path: str) -> int:
        if raw is None:
            fail(path, "the file size in bytes is required.")
        if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw < 2**63:
            fail(path, f"expected a size in bytes, not {what(raw)}.")
        return raw

    def display(self, value: Any) -> str:
        return f"{value:,} bytes"


@dataclass(frozen=True)
class Rule:
    """A cross-field rule: `check(message, path of the message, ctx)` runs right after the
    field named `after` is checked. `note` says it in words, for the docs."""

    after: str
    check: Callable[[Any, str, Ctx], None]
    note: str = ""


@dataclass(frozen=True)
class MessageSpec:
    """The field table of one proto message, in the order fields are read, checked and
    shown; `summary` renders one message as one line (an offence, a person)."""

    proto: type[Message]
    fields: tuple[Field, ...]
    rules: tuple[Rule, ...] = ()
    summary: Callable[[Any], str] | None = None

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names) or "" in names:
            raise ValueError(f"{self.name}: every field needs one distinct name.")
        hints = [f.check_after for f in self.fields] + [f.shown_in for f in self.fields]
        for after in [r.after for r in self.rules] + hints:
            if after and after not in names:
                raise ValueError(f"{self.name}: {after!r} is not a field.")

    @property
    def name(self) -> str:
        return str(self.proto.DESCRIPTOR.name)

    def number(self, name: str) -> int:
        """The proto field number of `name`."""
        return int(self.proto.DESCRIPTOR.fields_by_name[name].number)

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """The keys of this message in a form file: its readable fields, in proto order."""
        return tuple(sorted((f.name for f in self.fields if f.readable), key=self.number))

    @cached_property
    def check_order(self) -> tuple[Field, ...]:
        """The fields in the order they are checked: table order, but each field with a
        `check_after` right after that field."""
        order: list[Field] = []

        def place(f: Field) -> None:
            order.append(f)
            for later in self.fields:
                if later.check_after == f.name:
                    place(later)

        for f in self.fields:
            if not f.check_after:
                place(f)
        return tuple(order)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


@dataclass(frozen=True)
class Group(Field):
    """One nested message. Absent: refused when `required`, else left unset.

    `shorthand` names the field a lone scalar of its type stands for (a legal basis may
    be a slug: its instrument). `expand` describes the message as rows of its own.
    """

    spec: MessageSpec = field(kw_only=True)
    required: Required = field(default="", kw_only=True)
    shorthand: str = field(default="", kw_only=True)
    expand: bool = field(default=False, kw_only=True)
    plural: str = field(default="tables", kw_only=True)

    def single_types(self) -> tuple[type, ...]:
        if self.shorthand:
            return (Mapping, *self.spec.field(self.shorthand).single_types())
        return (Mapping,)

    def list_noun(self) -> str:
        return self.plural

    def check_in(self, parent: Any, path: str, ctx: Ctx) -> None:
        if not parent.HasField(self.name):
            required = need(self.required, parent, ctx)
            if required:
                fail(path, required)
            return
        self.check(getattr(parent, self.name), path, parent, ctx)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        check_message(self.spec, value, path, ctx)

    def read(self, raw: object, path: str) -> Message | None:
        return None if raw is None else self.read_entry(raw, path)

    def read_entry(self, raw: object, path: str) -> Message:
        if self.shorthand:
            short = self.spec.field(self.shorthand)
            if isinstance(raw, short.single_types()):
                return self.spec.proto(**{short.name: short.read(raw, path)})
        return read_message(self.spec, path, raw)

    def display(self, value: Any) -> str:
        return self.spec.summary(value) if self.spec.summary else ""

    def rows(self, parent: Any) -> Rows:
        if self.expand:
            return rows_of(self.spec, getattr(parent, self.name))
        return super().rows(parent)


@dataclass(frozen=True)
class Unique:
    """Entries of a list must differ in `key`; `describe` names a repeated one, `note`
    says the rule in words."""

    key: Callable[[Any], Any]
    describe: Callable[[Any], str]
    note: str = "no duplicates"


@dataclass(frozen=True)
class Many(Field):
    """A repeated field: at most `max_items` entries of kind `item`, each checked.

    `required` is the sentence for an empty list; entries are described as numbered
    rows ("Offence 1") when `numbered`, else as one row joined by `sep`.
    """

    item: Field = field(kw_only=True)
    max_items: int = field(kw_only=True)
    required: Required = field(default="", kw_only=True)
    unique: Unique | None = field(default=None, kw_only=True)
    numbered: bool = field(default=False, kw_only=True)
    sep: str = field(default="; ", kw_only=True)

    def check(self, value: Any, path: str, parent: Any, ctx: Ctx) -> None:
        check_count(path, value, self.max_items, required=need(self.required, parent, ctx))
        for i, entry in enumerate(value):
            self.item.check(entry, f"{path}[{i}]", parent, ctx)
        if self.unique is not None:
            check_unique(path, [self.unique.key(v) for v in value], self.unique.describe)

    def read(self, raw: object, path: str) -> list[Any]:
        entries = as_list(path, raw, self.item.single_types(), self.item.list_noun())
        return self.item.read_entries(entries, path)

    def rows(self, parent: Any) -> Rows:
        label, values = self.row or self.label, getattr(parent, self.name)
        if self.shown_in or not label:
            return []
        if self.show:
            return [(label, self.show(parent))]
        if self.numbered:
            return [(f"{label} {i}", self.item.display(v)) for i, v in enumerate(values, 1)]
        return [(label, self.sep.join(self.item.display(v) for v in values))]


# --- walking a spec ------------------------------------------------------------------------


def check_message(spec: MessageSpec, message: Any, prefix: str, ctx: Ctx) -> None:
    """Check each field in check order, each rule right after the field it follows."""
    for f in spec.check_order:
        f.check_in(message, at(prefix, f.name), ctx)
        for rule in spec.rules:
            if rule.after == f.name:
                rule.check(message, prefix, ctx)


def read_fields(spec: MessageSpec, path: str, data: Mapping[str, object]) -> Message:
    """The message of a table whose keys were checked: each readable field in check order."""
    values: dict[str, Any] = {}
    for f in spec.check_order:
        if f.readable:
            value = f.read(data.get(f.name), at(path, f.name))
            if value is not None:
                values[f.name] = value
    return spec.proto(**values)


def read_message(spec: MessageSpec, path: str, data: object) -> Message:
    """The message of a form-file table at `path`; unknown keys are refused."""
    return read_fields(spec, path, table(path, data, spec.keys))


def rows_of(spec: MessageSpec, message: Any) -> Rows:
    """(label, value) rows of a message, in spec order; rows without a value left out."""
    rows: Rows = []
    for f in spec.fields:
        rows += f.rows(message)
    return [(label, value) for label, value in rows if value]
