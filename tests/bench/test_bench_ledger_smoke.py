"""bench/bench_ledger.py measures appends, proofs and an export's audit, and speaks JSON lines.

Timings are not judged here: only that a quick run on a small ledger exits 0, reports
every figure with its fields, and that the export it built verifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENTRIES = 20_000
EXPECTED_KEYS = {
    "append": {
        "backend",
        "batch",
        "entries",
        "appends_per_s",
        "baseline_rows_per_s",
        "ratio",
        "orm_row_only_per_s",
    },
    "build": {"entries", "seconds", "entries_per_s", "cached", "matches_append"},
    "inclusion_proof": {
        "entries",
        "samples",
        "median_ms",
        "generate_median_ms",
        "verify_median_ms",
        "fixed_query_median_ms",
    },
    "consistency_proof": {
        "entries",
        "samples",
        "median_ms",
        "generate_median_ms",
        "verify_median_ms",
        "fixed_query_median_ms",
    },
    "audit": {
        "entries",
        "export_seconds",
        "verify_seconds",
        "baseline_seconds",
        "ratio",
        "decode_seconds",
        "report_ok",
    },
}


@pytest.mark.integration
def test_ledger_benchmark_quick_run_prints_json_lines() -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "bench_ledger.py"),
            "--quick",
            "--entries",
            str(ENTRIES),
            "--no-cache",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    by_figure: dict[str, list[dict[str, object]]] = {}
    for record in lines:
        assert record["bench"] == "ledger"
        by_figure.setdefault(str(record["figure"]), []).append(record)
    assert by_figure.keys() >= EXPECTED_KEYS.keys()
    for figure, keys in EXPECTED_KEYS.items():
        for record in by_figure[figure]:
            assert record.keys() >= keys, (figure, keys - record.keys())
    sqlite_batches = [r["batch"] for r in by_figure["append"] if r["backend"] == "sqlite"]
    assert sqlite_batches == [1, 10, 100]
    for record in by_figure["append"]:
        assert record["appends_per_s"] > 0
        assert record["baseline_rows_per_s"] > 0
    assert by_figure["build"][0]["entries"] == ENTRIES
    assert by_figure["build"][0]["matches_append"] is True
    audit = by_figure["audit"][0]
    assert audit["entries"] == ENTRIES
    assert audit["report_ok"] is True
    assert audit["ratio"] > 0
    assert "ratio" in result.stderr  # the human-readable table
