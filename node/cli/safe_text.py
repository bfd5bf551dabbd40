"""Text the CLI did not write, made safe to show on a terminal.

A note's subject, a case field, an officer's or an agency's name, an error sentence from
a node or a file name may come from a peer (or from whoever wrote a file handed to the
CLI). Printed as it is, an escape sequence in it could move the cursor, erase or rewrite
lines already shown (the `handling:` line of `mlax show`), retitle the window or hide
text; a bidirectional override could make text read differently from what it is; and
Rich would obey `[bold]`-style markup in it. `shown` is the one rule every command
applies to such text.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from rich.markup import escape

# Control characters (C0, DEL, C1), lone surrogates, line and paragraph separators, and
# format characters: the bidi embeddings, overrides and isolates, zero-width spaces, the
# byte-order mark, soft hyphens, tag characters.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Cf", "Zl", "Zp"})
# Format characters kept: zero-width non-joiner and joiner shape Persian, Arabic and
# Indic words and emoji sequences, and move or hide nothing.
_KEPT = frozenset({"\u200c", "\u200d"})
# Multi-line text keeps its line breaks and tabs.
_MULTILINE_KEPT = frozenset({"\n", "\t"})
# Where format characters live besides the Basic Multilingual Plane: plane 1 (Egyptian
# hieroglyph format controls, musical symbol formatting, shorthand) and plane 14 (tags).
_PLANES = (range(0x10000), range(0x10000, 0x20000), range(0xE0000, 0xF0000))
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _visible(ch: str) -> str:
    """An escape that shows which character was there: \\x1b, \\u202e, \\U000e0041."""
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    if cp <= 0xFFFF:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def _char_class(chars: list[str]) -> str:
    """A regex character class of `chars` (sorted code points), as ranges."""
    parts: list[str] = []
    start = prev = ord(chars[0])
    for cp in [*map(ord, chars[1:]), -1]:
        if cp == prev + 1:
            prev = cp
            continue
        parts.append(f"\\U{start:08x}" if start == prev else f"\\U{start:08x}-\\U{prev:08x}")
        start = prev = cp
    return "[" + "".join(parts) + "]"


@functools.cache
def _pattern(multiline: bool) -> re.Pattern[str]:
    # Built once per process from this Python's Unicode tables (about 30 ms).
    kept = _KEPT | (_MULTILINE_KEPT if multiline else frozenset())
    unsafe = [
        ch
        for plane in _PLANES
        for cp in plane
        if unicodedata.category(ch := chr(cp)) in _UNSAFE_CATEGORIES and ch not in kept
    ]
    return re.compile(_char_class(unsafe))


def shown(text: object, *, multiline: bool = False, markup: bool = True) -> str:
    """`text` as it may be printed: every character that could act on the terminal or hide
    or reorder text is replaced by a visible escape (ESC by `\\x1b`, U+202E by `\\u202e`).

    `multiline` keeps line feeds and tabs (a CR LF pair counts as a line feed); otherwise
    they are escaped too, so one value cannot pose as further lines of output. With
    `markup` (the default) the result is also escaped for Rich markup, for use inside
    markup strings and table cells; pass `markup=False` for `Text` objects and output
    printed with markup off.
    """
    value = str(text)
    if multiline:
        value = value.replace("\r\n", "\n")
    value = _pattern(multiline).sub(lambda m: _visible(m.group()), value)
    return escape(value) if markup else value
