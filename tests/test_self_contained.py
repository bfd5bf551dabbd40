"""`make test` passes in a fresh clone with nothing beside it: no test reads outside the repo."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# A path into a sibling checkout (`../shared/testvectors`, `.parent / "shared"`), as the
# Merkle vector tests once had.
OUTSIDE = re.compile(r"\.\./shared|shared/testvectors|/\s*[\"']shared[\"']|[\"']/work/shared")


def test_no_test_refers_to_files_beside_the_repo() -> None:
    offenders = [
        f"{path.relative_to(TESTS)}:{n}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() != Path(__file__).resolve()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, "tests must only read files inside the repo:\n" + "\n".join(offenders)


def test_copied_vectors_keep_their_licence_and_attribution() -> None:
    vectors = TESTS / "exchange" / "ledger" / "vectors"
    assert "Apache License" in (vectors / "merkle" / "LICENSE").read_text(encoding="utf-8")
    assert "transparency-dev/merkle" in (vectors / "README.md").read_text(encoding="utf-8")
    assert len(list((vectors / "merkle").rglob("*.json"))) > 100
