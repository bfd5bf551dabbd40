"""bench/bench_matching_quality.py at a small size: it runs, reports every figure, matches what
the OPRF gives, and its figures stay above a floor (a regression in tokens or thresholds
shows here before anyone reads the full benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[3]


def test_quick_run_reports_figures_above_the_floor() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_matching_quality.py"),
            "--quick",
            "--with-oprf",
        ],
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


def _synthetic_people() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import synthetic_people
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return synthetic_people


def test_the_generator_is_seeded() -> None:
    sp = _synthetic_people()
    one, two = sp.Generator(7), sp.Generator(7)
    pop_one, pop_two = one.population(200), two.population(200)
    assert pop_one.holder == pop_two.holder
    assert one.queries(pop_one, 50, "hard") == two.queries(pop_two, 50, "hard")
    assert sp.Generator(8).population(200).holder != pop_one.holder


def test_a_typo_is_one_edit_away_and_spares_the_first_letter() -> None:
    import random

    sp = _synthetic_people()
    rng = random.Random(3)
    for word in ("oleksandr", "nguyen", "popa", "shevchenko"):
        for _ in range(50):
            typo = sp.typo(rng, word)
            assert typo[0] == word[0]
            assert typo != word or word[1] == word[2]  # only a transposition of twins
            assert abs(len(typo) - len(word)) <= 1
