"""exchange/ledger_kinds.py: one registry of ledger entry kinds and their fields.

`LedgerEntry.of` refuses unregistered kinds and wrong fields; the registry equals the
kinds the code writes (read from its source) and the tables of docs/auditors.md.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.errors import MlaxError
from exchange.ledger_entry import LedgerEntry
from exchange.ledger_kinds import Kind, LedgerSchemaError, check

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "exchange", ROOT / "node", ROOT / "keys"]
AUDITORS = ROOT / "docs" / "auditors.md"


# --- LedgerEntry.of ------------------------------------------------------------------------


def test_a_registered_kind_with_its_fields_is_an_entry() -> None:
    entry = LedgerEntry.of("delivery.given_up", 5, message_id="m", peer="FR-X", attempts=3)
    assert entry.to_bytes() == (
        b'{"at":5,"attempts":3,"kind":"delivery.given_up","message_id":"m","peer":"FR-X"}'
    )
    assert LedgerEntry.of(Kind.NODE_STOPPED, 1, agency="GB-NCA").to_bytes() == (
        b'{"agency":"GB-NCA","at":1,"kind":"node.stopped"}'
    )


def test_an_unregistered_kind_is_a_programming_error() -> None:
    with pytest.raises(LedgerSchemaError, match=r"'node\.rebooted' is not registered") as e:
        LedgerEntry.of("node.rebooted", 1, agency="GB-NCA")
    assert isinstance(e.value, TypeError)
    assert not isinstance(e.value, MlaxError)


def test_a_missing_field_is_refused() -> None:
    with pytest.raises(LedgerSchemaError, match=r"missing \['attempts'\]"):
        LedgerEntry.of("delivery.given_up", 1, message_id="m", peer="FR-X")


def test_a_field_of_another_kind_is_refused() -> None:
    with pytest.raises(LedgerSchemaError, match=r"not of its kind \['officer'\]"):
        LedgerEntry.of("node.stopped", 1, agency="GB-NCA", officer="x")


def test_optional_fields_may_be_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Kind.NODE_STOPPED, "optional", ("reason",))
    assert check("node.stopped", ["agency"]) is Kind.NODE_STOPPED
    assert check("node.stopped", ["agency", "reason"]) is Kind.NODE_STOPPED
    with pytest.raises(LedgerSchemaError):
        check("node.stopped", ["reason"])


def test_no_kind_repeats_or_reserves_a_field() -> None:
    for kind in Kind:
        names = [*kind.required, *kind.optional]
        assert len(set(names)) == len(names), kind
        assert not {"kind", "at"} & set(names), kind
        assert re.fullmatch(r"[a-z]+\.[a-z_]+", kind.value), kind


# --- the kinds the code writes -------------------------------------------------------------


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            if "_proto" not in path.parts:
                yield path, ast.parse(path.read_text(encoding="utf-8"))


def _constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "string" assignments."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name) and isinstance(node.value.value, str):
                    out[target.id] = node.value.value
    return out


def _kinds(expr: ast.expr, constants: dict[str, str]) -> list[str] | None:
    """The kinds an expression can name; a prefix ends with '*'; None if unknown."""
    if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
        return [expr.value]
    if isinstance(expr, ast.Name) and expr.id in constants:
        return [constants[expr.id]]
    if isinstance(expr, ast.IfExp):
        a, b = _kinds(expr.body, constants), _kinds(expr.orelse, constants)
        return None if a is None or b is None else a + b
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left = _kinds(expr.left, constants)
        return None if left is None else [k + "*" for k in left]
    return None


def _call_sites() -> Iterator[tuple[str, list[str] | None, set[str], bool]]:
    """(where, kinds, keyword fields, has **fields) of every entry built in the code."""
    for path, tree in _modules():
        constants = _constants(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if name == "LedgerEntry.of":
                kind_arg, fields = node.args[0], set()
            elif name in ("ledger.refusal", "refusal") and len(node.args) >= 2:
                kind_arg, fields = node.args[1], {"officer", "reason"}
            else:
                continue
            fields |= {k.arg for k in node.keywords if k.arg is not None}
            spread = any(k.arg is None for k in node.keywords)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            yield where, _kinds(kind_arg, constants), fields, spread


def _matching(kind: str) -> list[Kind]:
    if kind.endswith("*"):
        return [k for k in Kind if k.value.startswith(kind[:-1])]
    return [k for k in Kind if k.value == kind]


def test_every_kind_the_code_writes_is_registered_with_its_fields() -> None:
    problems, unknown = [], []
    for where, kinds, fields, spread in _call_sites():
        if kinds is None:
            unknown.append(where)
            continue
        for kind in kinds:
            registered = _matching(kind)
            if not registered:
                problems.append(f"{where}: {kind} is not registered")
            for k in registered:
                if not fields <= k.fields or not (spread or set(k.required) <= fields):
                    problems.append(f"{where}: {k} with fields {sorted(fields)}")
    assert not problems, "\n".join(problems)
    # Only the refusal helper passes a kind it was given (its callers are checked above).
    assert [w.split(":")[0] for w in unknown] == ["node/storage/ledger.py"], unknown


def test_every_registered_kind_is_written_somewhere() -> None:
    written = {
        k for _, kinds, _, _ in _call_sites() for kind in kinds or [] for k in _matching(kind)
    }
    assert set(Kind) - written == set()


# --- docs/auditors.md ----------------------------------------------------------------------


def _doc_rows() -> Iterator[tuple[str, list[str], list[str]]]:
    """(kinds, field names, optional field names) of each row of the kind tables."""
    columns: list[str] | None = None
    for line in AUDITORS.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            columns = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if columns is None:
            columns = cells
            continue
        if set("".join(cells)) <= set("-: ") or "kind" not in columns:
            continue
        kinds = re.findall(r"`([^`]+)`", cells[columns.index("kind")])
        fields_cell = cells[columns.index("fields")]
        parts = [p.strip() for p in fields_cell.split(",")]
        names = [re.sub(r"`([^`]+)`.*", r"\1", p) for p in parts]
        optional = [n for n, p in zip(names, parts, strict=True) if "(optional)" in p]
        yield from ((k, names, optional) for k in kinds)


def test_the_auditors_guide_lists_every_kind_once_with_its_fields() -> None:
    rows = list(_doc_rows())
    listed = [k for k, _, _ in rows]
    assert len(listed) == len(set(listed)), "a kind listed twice"
    assert set(listed) == {k.value for k in Kind}
    for kind, names, optional in rows:
        registered = Kind(kind)
        assert names == [*registered.required, *registered.optional], kind
        assert optional == list(registered.optional), kind
