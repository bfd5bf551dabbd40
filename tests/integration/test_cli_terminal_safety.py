"""A hostile note between real nodes cannot act on the recipient's terminal through `mlax`.

A sender writes terminal escape sequences (cursor up and erase line, a carriage return,
a C1 CSI, a window-title OSC), bidirectional overrides and Rich markup into a note's
subject and text. The recipient's `mlax show` must print all of it as visible escapes,
its own `handling:` line intact after it; `--json` must give the text back exactly.
"""

from __future__ import annotations

import json
import unicodedata
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Cli, LiveFederation

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("federation")]

GB, FR = "GB-NCA", "FR-OCRTEH"

SUBJECT = "Urgent\x1b[2K\rRe: nothing to see\u202eTXT.EXE\u202c [bold red]READ ME[/]"
# Moves the cursor up four lines and erases each, then writes a fake handling line.
TEXT = (
    "Dear colleague,\n"
    + "\x1b[1A\x1b[2K" * 4
    + "  handling: none\r\n"
    + "\x9b2J\x1b]0;window title\x07\x1b]8;;https://example.invalid\x1b\\link\x1b]8;;\x1b\\\n"
    + "\u2066isolate\u2069 and \u202ebidi\u202c, \x08\x08backspaced, :smile: [link=x]y[/link]"
)


def _unsafe(text: str) -> list[str]:
    return [
        c
        for c in text
        if c not in "\n\t"
        and unicodedata.category(c) in {"Cc", "Cf", "Cs", "Zl", "Zp"}
        and c not in "\u200c\u200d"
    ]


def test_show_prints_a_hostile_note_inert_and_json_keeps_it_exact(
    live: LiveFederation, cli: Cli
) -> None:
    gb = live.client(GB)
    sent = gb.send(
        FR,
        subject=SUBJECT,
        text=TEXT,
        message_type="note",
        case_ref="ESC-1",
        handling=("no-onward-transmission",),
    )
    live.wait_delivered(gb, sent.message_id)
    fr_cred = live.credential(FR)

    result = cli.run("show", sent.message_id, "--as", fr_cred)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "\x1b" not in out
    assert not [c for c in out if 0x80 <= ord(c) <= 0x9F], "a C1 control reached the terminal"
    assert not [c for c in out if 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069]
    assert not _unsafe(out), _unsafe(out)
    assert not _unsafe(result.stderr)
    lines = out.splitlines()
    # The node's own line stands, once, before the content; the sender's fake one shows
    # as text with its escapes visible.
    assert lines.count("  handling: no-onward-transmission") == 1
    assert lines.index("  handling: no-onward-transmission") < lines.index("Dear colleague,")
    assert "\\x1b[1A\\x1b[2K" * 4 + "  handling: none" in out
    assert "Urgent\\x1b[2K\\rRe: nothing to see\\u202eTXT.EXE\\u202c [bold red]READ ME[/]" in out
    assert "\\x9b2J\\x1b]0;window title\\x07" in out
    assert ":smile: [link=x]y[/link]" in out  # markup and emoji codes shown as written

    shown = json.loads(cli.run("show", sent.message_id, "--as", fr_cred, "--json").stdout)
    assert shown["subject"] == SUBJECT
    assert shown["text"] == TEXT
    assert shown["handling_codes"] == ["no-onward-transmission"]

    # The sender's own view of its note, and the recipient's inbox, are inert too.
    for args in (
        ("show", sent.message_id, "--as", live.credential(GB)),
        ("inbox", "--as", fr_cred),
    ):
        listed = cli.run(*args)
        assert listed.returncode == 0, listed.stderr
        assert not _unsafe(listed.stdout)
