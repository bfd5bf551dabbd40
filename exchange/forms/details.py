"""The field tables of the transition details, one per `TransitionDetails` kind, and of
`AttachmentRef`. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from exchange._proto.mlax.v1 import forms_pb2 as pb
from exchange.case import Action
from exchange.forms.base import (
    LONG_CHARS,
    MAX_ATTACHMENT_REFS,
    MAX_CONDITIONS,
    MAX_QUESTIONS,
    NAME_CHARS,
    TEXT_CHARS,
    fail,
)
from exchange.forms.checks import (
    FILE_NAME,
)
from exchange.forms.spec import (
    Blob,
    ByteCount,
    Choice,
    Ctx,
    Flag,
    Group,
    Instant,
    Many,
    MessageSpec,
    Rule,
    Text,
    Unique,
)
from exchange.forms.vocab import (
    ASSISTANCE_TYPES,
    REFUSAL_GROUNDS,
)

# --- transition details --------------------------------------------------------------------

ATTACHMENT_REF = MessageSpec(
    pb.AttachmentRef,
    (
        Blob(
            "attachment_id",
            label="Attachment id",
            size=16,
            encoding="uuid",
            problem="must be 16 bytes (a UUID).",
            unreadable="expected a UUID, as 32 hexadecimal digits.",
            note="in a form file a UUID, with or without dashes",
        ),
        Text(
            "name",
            size=255,
            shape=FILE_NAME,
            required="a file name is required.",
            label="Name",
            note="no `/` or `\\`, not `.` or `..`",
        ),
        Blob(
            "sha256",
            label="SHA-256",
            size=32,
            encoding="hex",
            problem="must be a 32-byte SHA-256 digest.",
            unreadable="expected a SHA-256 digest, as 64 hexadecimal digits.",
            note="in a form file 64 hex digits",
        ),
        ByteCount("size", label="Size", note="in a form file a non-negative integer, required"),
    ),
    summary=lambda r: f"{r.name} ({r.size:,} bytes, sha256 {r.sha256.hex()[:16]}…)",
)


def _attachments(name: str, label: str) -> Many:
    return Many(
        name,
        item=Group(spec=ATTACHMENT_REF),
        max_items=MAX_ATTACHMENT_REFS,
        unique=Unique(
            lambda ref: ref.attachment_id, lambda i: f"Attachment {i.hex()}", "no id twice"
        ),
        numbered=True,
        label=label,
        note="evidence already sent as attachments of the case",
    )


def note() -> Text:
    return Text("note", size=TEXT_CHARS, multiline=True, label="Note")


def _report_is_final_by_its_action(report: Any, prefix: str, ctx: Ctx) -> None:
    final = ctx.action is Action.REPORT_EXECUTED
    if ctx.action is not None and report.final != final:
        fail(
            "final",
            f"a {ctx.action.value} report must have final = {'true' if final else 'false'}.",
        )


# The details of each kind, by their TransitionDetails oneof field (ACTION_DETAILS).
DETAILS: Mapping[str, MessageSpec] = MappingProxyType(
    {
        "acknowledge": MessageSpec(
            pb.Acknowledgement,
            (
                Text(
                    "reference",
                    size=NAME_CHARS,
                    label="Their reference",
                    note="the requested authority's own file reference",
                ),
                note(),
            ),
        ),
        "request_info": MessageSpec(
            pb.InfoRequest,
            (
                Many(
                    "questions",
                    item=Text(
                        size=TEXT_CHARS, multiline=True, required="a question may not be empty."
                    ),
                    max_items=MAX_QUESTIONS,
                    required="a request for information needs at least one question.",
                    numbered=True,
                    label="Question",
                    note="none empty",
                ),
                Instant("reply_by", label="Reply by"),
            ),
        ),
        "provide_info": MessageSpec(
            pb.InfoProvided,
            (
                Text(
                    "answers",
                    size=LONG_CHARS,
                    multiline=True,
                    required="the information provided is required.",
                    label="Answers",
                ),
                _attachments("documents", "Document"),
            ),
        ),
        "accept": MessageSpec(
            pb.Acceptance,
            (
                Many(
                    "conditions",
                    item=Text(
                        size=TEXT_CHARS, multiline=True, required="a condition may not be empty."
                    ),
                    max_items=MAX_CONDITIONS,
                    numbered=True,
                    label="Condition",
                    note="none empty; e.g. the speciality rule or limits on use",
                ),
                note(),
            ),
        ),
        "refuse": MessageSpec(
            pb.Refusal,
            (
                Many(
                    "grounds",
                    item=Choice(vocab=REFUSAL_GROUNDS),
                    max_items=len(REFUSAL_GROUNDS),
                    required="a refusal must state at least one ground.",
                    unique=Unique(lambda v: v, REFUSAL_GROUNDS.label),
                    label="Grounds",
                    note="section 8.10",
                ),
                Text(
                    "explanation",
                    size=TEXT_CHARS,
                    multiline=True,
                    required="a refusal must explain how its grounds apply.",
                    label="Explanation",
                ),
            ),
        ),
        "start_execution": MessageSpec(
            pb.ExecutionStart,
            (
                Text(
                    "executing_authority",
                    size=NAME_CHARS,
                    label="Executing authority",
                    note="e.g. a court or police unit",
                ),
                note(),
            ),
        ),
        "report": MessageSpec(
            pb.ExecutionReport,
            (
                Flag(
                    "final",
                    readable=False,
                    label="Final report",
                    row="Report",
                    show=lambda r: "final" if r.final else "partial",
                    note="true for `report_executed`, false for `report_partial`; in a form "
                    "file not a key: it follows from the action",
                ),
                Text(
                    "summary",
                    size=LONG_CHARS,
                    multiline=True,
                    required="an execution report needs a summary.",
                    label="Summary",
                ),
                Many(
                    "assistance_executed",
                    item=Choice(vocab=ASSISTANCE_TYPES),
                    max_items=len(ASSISTANCE_TYPES),
                    unique=Unique(lambda v: v, ASSISTANCE_TYPES.label),
                    label="Assistance executed",
                ),
                _attachments("evidence", "Evidence"),
            ),
            rules=(
                Rule(
                    "final",
                    _report_is_final_by_its_action,
                    "`final` matches the action: true for `report_executed`.",
                ),
            ),
        ),
        "withdraw": MessageSpec(
            pb.Withdrawal,
            (
                Text(
                    "reason",
                    size=TEXT_CHARS,
                    multiline=True,
                    required="a withdrawal must give its reason.",
                    label="Reason",
                ),
            ),
        ),
        "close": MessageSpec(
            pb.Closure,
            (Text("outcome", size=TEXT_CHARS, multiline=True, label="Outcome"),),
        ),
    }
)
