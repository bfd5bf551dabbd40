"""Every domain-separation string ("mlax/v1/...") is a named constant of exchange/encoding.py.

No other module of exchange/, node/ or keys/ spells one (docstrings may quote them), so
two purposes cannot share a context by a typo, and docs/protocol.md's PAE table (3.3)
lists exactly the PAE contexts.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from exchange import encoding

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "exchange", ROOT / "node", ROOT / "keys"]
ENCODING = ROOT / "exchange" / "encoding.py"
PROTOCOL = ROOT / "docs" / "protocol.md"
PREFIX = "mlax/v1/"

CONTEXTS = {n: v for n, v in vars(encoding).items() if n.startswith("CTX_")}
TAGS = {n: v for n, v in vars(encoding).items() if n.startswith("TAG_")}


def _docstrings(tree: ast.Module) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def test_no_module_but_encoding_spells_a_context() -> None:
    found = []
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if "_proto" in path.parts or path == ENCODING:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            skip = _docstrings(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Constant) or id(node) in skip:
                    continue
                value = node.value
                text = value.decode("latin-1") if isinstance(value, bytes) else value
                # Protobuf file paths (mlax/v1/ledger.proto) name files, not contexts.
                if isinstance(text, str) and PREFIX in text and not text.endswith(".proto"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    assert not found, "use a constant of exchange/encoding.py:\n" + "\n".join(found)


def test_the_constants_are_distinct_and_versioned() -> None:
    values = [*CONTEXTS.values(), *TAGS.values()]
    assert len(CONTEXTS) >= 12
    assert len(set(values)) == len(values)
    assert all(v.startswith(PREFIX.encode()) and v.isascii() for v in values)
    # No PAE context is a prefix of another.
    ctx = list(CONTEXTS.values())
    assert not any(a != b and b.startswith(a) for a in ctx for b in ctx)


def test_the_protocols_pae_table_lists_exactly_the_contexts() -> None:
    text = PROTOCOL.read_text(encoding="utf-8")
    section = text.split("### 3.3 ", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^\| `(ctx_\w+)` \| `([^`]+)` \| (\d+) \|", section, flags=re.M)
    assert sorted(value for _, value, _ in rows) == sorted(v.decode() for v in CONTEXTS.values())
    assert len({name for name, _, _ in rows}) == len(rows)
    for _, value, length in rows:
        assert int(length) == len(value), value
