"""docs/protocol.md against the published test vectors (docs/vectors/).

The worked example quotes keys, signatures, digests and encodings from the vectors. Every
hex string of 32 or more digits in the document must occur in the vector files, and every
abbreviated one (`d3ae416b…1b8b`, `2cdc6f71…`) must be the start and end of a value the
vectors record, so regenerating the vectors cannot leave the document quoting stale bytes.
The document must also name every domain-separation context of exchange/encoding.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange import encoding

ROOT = Path(__file__).resolve().parents[2]
DOC_PATH = ROOT / "docs" / "protocol.md"
VECTOR_PATHS = sorted((ROOT / "docs" / "vectors").glob("*.json"))

DOC = DOC_PATH.read_text(encoding="utf-8")
VECTOR_TEXT = "\n".join(p.read_text(encoding="utf-8") for p in VECTOR_PATHS).lower()

ELLIPSIS = "…"
# A whole hex run: not part of a longer word. Runs touching an ellipsis are abbreviations.
FULL_HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{32,}(?![0-9A-Za-z])")
ABBREVIATED_HEX = re.compile(r"(?<![0-9A-Za-z])([0-9a-fA-F]*)…([0-9a-fA-F]*)(?![0-9A-Za-z])")
MIN_ABBREVIATION_DIGITS = 4
HEX_VALUE = re.compile(r"[0-9a-f]+")
CONTEXTS = {name: value for name, value in vars(encoding).items() if name.startswith("CTX_")}
# Contexts no published vector pins: a ledger entry's commitment (the ledger's own vectors
# are Merkle ones, tests/exchange/ledger), a key file's associated data and a backup
# manifest's seal (never sent).
NOT_IN_VECTORS = {"CTX_LEDGER_ENTRY", "CTX_KEYFILE", "CTX_BACKUP_MANIFEST"}  # never on the wire


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def _candidates() -> set[str]:
    """Every byte string the vectors record, as lowercase hex.

    Hex values as they stand, and the UTF-8 of every string (the document shows, say, a
    key id field of a header as the hex of its ASCII text).
    """
    out: set[str] = set()
    for path in VECTOR_PATHS:
        for text in _strings(json.loads(path.read_text(encoding="utf-8"))):
            lowered = text.lower()
            if len(lowered) % 2 == 0 and HEX_VALUE.fullmatch(lowered):
                out.add(lowered)
            out.add(text.encode("utf-8").hex())
    return out


CANDIDATES = _candidates()


def _full_hex() -> list[str]:
    found = []
    for m in FULL_HEX.finditer(DOC):
        before, after = DOC[max(m.start() - 1, 0) : m.start()], DOC[m.end() : m.end() + 1]
        if ELLIPSIS not in (before, after):
            found.append(m.group())
    return sorted(set(found))


def _abbreviated_hex() -> list[tuple[str, str]]:
    found = {
        (m.group(1), m.group(2))
        for m in ABBREVIATED_HEX.finditer(DOC)
        if len(m.group(1)) + len(m.group(2)) >= MIN_ABBREVIATION_DIGITS
    }
    return sorted(found)


FULL = _full_hex()
ABBREVIATED = _abbreviated_hex()


def test_the_document_quotes_values() -> None:
    # Guards the extraction itself: the worked example quotes dozens of values.
    assert len(FULL) >= 20
    assert len(ABBREVIATED) >= 15
    assert len(VECTOR_PATHS) >= 6


@pytest.mark.parametrize("value", FULL)
def test_hex_value_is_in_the_vectors(value: str) -> None:
    assert value.lower() in VECTOR_TEXT, (
        f"docs/protocol.md quotes {value}, which no file in docs/vectors/ contains"
    )


@pytest.mark.parametrize(("head", "tail"), ABBREVIATED, ids=lambda part: part or "-")
def test_abbreviated_hex_value_is_in_the_vectors(head: str, tail: str) -> None:
    head, tail = head.lower(), tail.lower()
    matches = [
        c
        for c in CANDIDATES
        if len(c) >= len(head) + len(tail) and c.startswith(head) and c.endswith(tail)
    ]
    assert matches, (
        f"docs/protocol.md abbreviates {head}{ELLIPSIS}{tail}, but no value in docs/vectors/ "
        "starts and ends that way"
    )


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_context_is_documented(name: str) -> None:
    context = CONTEXTS[name].decode("ascii")
    assert f"`{context}`" in DOC, f"docs/protocol.md does not mention {name} ({context})"
    # The PAE table of section 3.3 gives each context with its length.
    row = re.compile(rf"\| `{re.escape(context)}` \| {len(context)} \|")
    assert row.search(DOC), f"the context table does not give {context} with length {len(context)}"


def test_every_context_is_in_the_vectors() -> None:
    missing = {name for name, value in CONTEXTS.items() if value.decode() not in VECTOR_TEXT}
    assert missing == NOT_IN_VECTORS
