"""bench/matching_quality.py at a small size: it runs, reports every figure, matches what
the OPRF gives, and its figures stay above a floor (a regression in tokens or thresholds
shows here before anyone reads the full benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_quick_run_reports_figures_above_the_floor() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "matching_quality.py"), "--quick", "--with-oprf"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = {r["setting"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(lines) == {"easy", "hard"}
    for line in lines.values():
        assert line["queries_with_truth"] > 150
        for level in ("any", "strong"):
            assert set(line[level]) == {"precision", "recall", "f1", "false_hits"}
        assert line["strong"]["precision"] >= 0.97
        assert line["any"]["precision"] >= 0.93
        assert line["oprf_bands_agree"] is True
        assert line["oprf_hits"] > 0
    assert lines["easy"]["any"]["recall"] >= 0.9
    assert lines["hard"]["any"]["recall"] >= 0.65
    assert lines["easy"]["any"]["recall"] > lines["hard"]["any"]["recall"]
    assert "precision" in result.stderr  # the table


def test_the_generator_is_seeded() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import synthetic_people as sp
    finally:
        sys.path.remove(str(ROOT / "bench"))
    one, two = sp.Generator(7), sp.Generator(7)
    pop_one, pop_two = one.population(200), two.population(200)
    assert pop_one.holder == pop_two.holder
    assert one.queries(pop_one, 50, "hard") == two.queries(pop_two, 50, "hard")
    assert sp.Generator(8).population(200).holder != pop_one.holder
