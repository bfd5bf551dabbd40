"""No file of bench/ shadows a module: run as a script, a benchmark has bench/ first on
sys.path, so a bench/exchange.py would be imported in place of the `exchange` package."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
PATCH = re.compile(r"sys\.path\s*(\[|\.(append|insert|extend|remove)\b|[+]?=)")


def _importable(name: str) -> bool:
    """Whether `name` is a top-level module without bench/ (editable installs of the
    project are found by their own finder, not on sys.path); sys.modules not consulted."""
    return any(
        finder.find_spec(name, None) is not None
        for finder in sys.meta_path
        if hasattr(finder, "find_spec")
    )


def test_no_bench_module_shadows_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", [p for p in sys.path if Path(p or ".").resolve() != BENCH])
    assert _importable("exchange")  # the check sees the project's packages
    for path in sorted(BENCH.glob("*.py")):
        name = path.stem
        assert name not in sys.stdlib_module_names, path.name
        assert not _importable(name), f"bench/{path.name} shadows the module {name}"


def test_benchmarks_are_named_bench_and_leave_sys_path_alone() -> None:
    # Imported by benchmarks, run nothing: the matching benchmarks' people, the baselines' server.
    helpers = {"synthetic_people", "bare_grpc"}
    for path in sorted(BENCH.glob("*.py")):
        assert path.stem.startswith("bench_") or path.stem in helpers, path.name
        assert not PATCH.search(path.read_text(encoding="utf-8")), path.name
