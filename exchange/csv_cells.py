"""One CSV cell as every MLAX export writes it: text from a peer or a user can carry
terminal escapes and spreadsheet formulas, and neither survives (pure: used by the
statistics exports and the console's match-results CSV)."""

from __future__ import annotations

# Spreadsheets run a cell that starts with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(ch: str) -> str:
    """The escape node.cli.safe_text.shown writes for `ch`: \\x1b, \\u202e, \\n."""
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    return f"\\x{cp:02x}" if cp <= 0xFF else f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"


def csv_cell(value: object) -> object:
    """A CSV cell: a number as it is; text with every character that is not printable
    (control and format characters, line breaks) shown as an escape (ESC as `\\x1b`), and
    never a formula a spreadsheet would run (a leading `'` makes it text)."""
    if not isinstance(value, str):
        return value
    text = "".join(ch if ch.isprintable() else _visible(ch) for ch in value)
    return "'" + text if text.startswith(_FORMULA_START) else text
