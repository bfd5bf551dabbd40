"""The committed wire layer must be exactly what proto/ generates with the pinned tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_proto_sources(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(out)],
        check=True,
        capture_output=True,
    )
    committed = ROOT / "exchange" / "_proto"
    want = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    have = {
        p.relative_to(committed): p.read_bytes()
        for p in committed.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert sorted(map(str, have)) == sorted(map(str, want)), "generated file set differs"
    stale = [str(name) for name, data in want.items() if have[name] != data]
    assert not stale, f"regenerate with `make proto`: {stale} differ from proto/"
