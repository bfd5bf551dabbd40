"""Text the CLI did not write cannot act on the terminal: `shown` and what commands print.

The live end-to-end check (a hostile note between real nodes, `mlax show`) is in
tests/integration/test_cli_terminal_safety.py.
"""

from __future__ import annotations

import unicodedata

import pytest
import typer

from exchange._proto.mlax.v1 import attachment_pb2 as apb
from exchange._proto.mlax.v1 import casework_pb2 as cpb
from exchange.ledger.audit import AuditReport, Problem
from node.cli import audit_cmd, cases_cmd, messages_cmd
from node.cli.common import fail, say, warn
from node.cli.safe_text import shown
from node.client import CaseView, Evidence, MessageDetail, MessageInfo

# What a hostile sender would write: cursor up and erase line, a carriage return to
# overwrite, a CSI in its one-byte C1 form, a window-title OSC ended by BEL, a backspace,
# a right-to-left override and an isolate, a zero-width space, a BOM, a tag character, a
# line separator, a DEL, and Rich markup.
HOSTILE = (
    "ok\x1b[1A\x1b[2K\rhandling: none \x9b2K\x1b]0;pwned\x07x\x08"
    "\u202eevil\u202c\u2067iso\u2069\u200bzw\ufeff\U000e0041\u2028\x7f[bold red]LOUD[/]"
)
BIDI = [chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F)]


def unsafe(text: str, multiline: bool = False) -> list[str]:
    """Characters in `text` a terminal could act on, or that hide or reorder text."""
    allowed = {"\n", "\t"} if multiline else set()
    return [
        c
        for c in text
        if c not in allowed
        and (unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"} and c not in "\u200c\u200d")
    ]


# -- the function -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "visible"),
    [
        ("\x1b", "\\x1b"),
        ("\x9b", "\\x9b"),
        ("\x07", "\\x07"),
        ("\x08", "\\x08"),
        ("\x00", "\\x00"),
        ("\x7f", "\\x7f"),
        ("\x85", "\\x85"),
        ("\r", "\\r"),
        ("\n", "\\n"),
        ("\t", "\\t"),
        ("\u202e", "\\u202e"),
        ("\u2066", "\\u2066"),
        ("\u200f", "\\u200f"),
        ("\u200b", "\\u200b"),
        ("\ufeff", "\\ufeff"),
        ("\u2028", "\\u2028"),
        ("\u00ad", "\\xad"),
        ("\U000e0041", "\\U000e0041"),
        ("\ud800", "\\ud800"),
    ],
)
def test_each_dangerous_character_becomes_a_visible_escape(raw: str, visible: str) -> None:
    assert shown(f"a{raw}b", markup=False) == f"a{visible}b"


def test_nothing_a_terminal_acts_on_survives() -> None:
    every = "".join(
        ch
        for plane in (range(0x10000), range(0x10000, 0x20000), range(0xE0000, 0xF0000))
        for cp in plane
        if unicodedata.category(ch := chr(cp)) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
    )
    for multiline in (False, True):
        out = shown(every, multiline=multiline, markup=False)
        assert not unsafe(out, multiline)
        # Only the two joiners (and, multi-line, LF and TAB) are left as they were.
        leftovers = {c for c in out if not (c.isascii() and c.isprintable())}
        assert leftovers == {"\u200c", "\u200d"} | ({"\n", "\t"} if multiline else set())


@pytest.mark.parametrize(
    "text",
    [
        "Müller, Ægir Þórsson, Łukasz Żółć",
        "Иванов Пётр",
        "محمد عبد الله",  # right-to-left script: shown as written, nothing escaped
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a zero-width non-joiner
        "王小明 / 山田太郎",
        "\U0001f469\u200d\U0001f469\u200d\U0001f467 €100 – “quoted”",  # a ZWJ emoji sequence
        "paths: C:\\temp\\x1b is just text",
    ],
)
def test_text_people_write_is_unchanged(text: str) -> None:
    assert shown(text, markup=False) == text
    assert shown(text, multiline=True, markup=False) == text


def test_multiline_keeps_line_breaks_and_tabs_but_not_a_bare_carriage_return() -> None:
    assert shown("a\r\nb\n\tc", multiline=True, markup=False) == "a\nb\n\tc"
    lone_cr = shown("done\rhandling: none", multiline=True, markup=False)
    assert lone_cr == "done\\rhandling: none"
    assert shown("a\nb", markup=False) == "a\\nb"


def test_markup_is_shown_literally(capsys: pytest.CaptureFixture[str]) -> None:
    from node.cli.common import console

    quoted = shown("[bold red]LOUD[/] :warning: \\[/] x\\")
    console.print(f"[green]ok[/] [italic]{quoted}[/]")
    assert capsys.readouterr().out == "ok [bold red]LOUD[/] :warning: \\[/] x\\\n"
    assert shown("[bold]x[/]", markup=False) == "[bold]x[/]"


# -- what the commands print --------------------------------------------------------------


def test_say_keeps_a_quoted_value_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    say(f"  last problem: {HOSTILE}")
    out = capsys.readouterr().out
    assert not unsafe(out, multiline=True)
    assert out.count("\n") == 1
    assert "\\x1b[1A\\x1b[2K\\rhandling: none" in out
    assert "[bold red]LOUD[/]" in out


def test_fail_and_warn_neutralise_what_a_node_or_file_said(
    capsys: pytest.CaptureFixture[str],
) -> None:
    warn(f"about {HOSTILE}")
    with pytest.raises(typer.Exit):
        fail(f"The peer said: {HOSTILE}")
    err = capsys.readouterr().err
    assert not unsafe(err, multiline=True)
    assert err.count("\n") == 2
    assert "[bold red]LOUD[/]" in err  # the markup is shown, not obeyed


def _detail(**info: object) -> MessageDetail:
    fields: dict[str, object] = {
        "message_id": "0190b0a0-0000-7000-8000-000000000001",
        "direction": "inbound",
        "peer": "GB-NCA",
        "message_type": "note",
        "case_ref": "C-1",
        "created_at": 1_700_000_000_000,
        "state": "received",
        "attempts": 0,
        "last_error": "",
        "next_attempt_at": 0,
        "delivered_at": 0,
        "read_at": 1,
        "handling_codes": ("no-onward-transmission",),
        "in_reply_to": "",
        "submitted_by": "",
    }
    fields.update(info)
    return MessageDetail(
        info=MessageInfo(**fields),  # type: ignore[arg-type]
        subject=f"Subject {HOSTILE}",
        text=f"line one\r\nline two\n\t{HOSTILE}",
        evidence=Evidence(b"", False, 0, 0, "ab" * 32, ""),
        sender_key_id="k",
        recipient_key_id="k",
        restricted_to=(),
    )


def test_show_prints_a_hostile_note_inert(capsys: pytest.CaptureFixture[str]) -> None:
    messages_cmd._print_detail(_detail())
    out = capsys.readouterr().out
    assert not unsafe(out, multiline=True)
    lines = out.splitlines()
    assert "  handling: no-onward-transmission" in lines
    assert "Subject ok\\x1b[1A\\x1b[2K\\rhandling: none" in out
    assert lines.count("line one") == lines.count("line two") == 1  # the text keeps its lines
    assert "[bold red]LOUD[/]" in out


def test_show_prints_a_peers_refusal_inert(capsys: pytest.CaptureFixture[str]) -> None:
    # An outbound message's last error is the sentence the peer answered with.
    messages_cmd._print_detail(
        _detail(direction="outbound", state="failed", last_error=f"Refused: {HOSTILE}")
    )
    out = capsys.readouterr().out
    assert not unsafe(out, multiline=True)
    assert "last error: Refused: ok\\x1b[1A" in out


def test_case_show_prints_peer_fields_inert(capsys: pytest.CaptureFixture[str]) -> None:
    wire = cpb.CaseView(
        summary=cpb.CaseSummary(
            case_ref="GB-NCA-2026-0001",
            case_type="mla",
            role="requesting",
            peer="NG-NAPTIP",
            state="accepted",
            last_error=HOSTILE,
        ),
        timeline=[
            cpb.CaseEvent(
                seq=1, action="accept", agency="NG-NAPTIP", officer=HOSTILE, state_after="x"
            )
        ],
        attachments=[apb.AttachmentInfo(attachment_id="a1", name=HOSTILE, size=3)],
    )
    cases_cmd._print_case(CaseView.from_proto(wire))
    out = capsys.readouterr().out
    assert not unsafe(out, multiline=True)
    assert "[bold red]LOUD[/]" in out


def test_a_multi_line_field_is_indented_below_its_label(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases_cmd._say_field("Summary of facts", "First.\nhandling: none\x1b[1A")
    assert capsys.readouterr().out.splitlines() == [
        "  Summary of facts:",
        "      First.",
        "      handling: none\\x1b[1A",
    ]


def test_audit_report_from_an_untrusted_export_prints_inert(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = AuditReport(
        origin=HOSTILE,
        entries=1,
        redacted=0,
        checkpoints=0,
        latest_checkpoint_size=0,
        cosigned_by={HOSTILE: 1},
        problems=[Problem(0, "modified", HOSTILE)],
        warnings=[HOSTILE],
        directory_admins=[],
    )
    audit_cmd._print_report(report, json_out=False)
    out = capsys.readouterr().out
    assert not unsafe(out, multiline=True)
    assert out.count("[bold red]LOUD[/]") == 4
